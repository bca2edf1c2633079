//! Every relative link in the README, docs/ and the chart README points at a file that exists
//! and, with `#anchor`, at a heading that exists (GitHub's heading slugs). Links leaving the
//! repository are not checked.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose(markdown: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    markdown.lines().filter(move |line| {
        if line.starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

fn anchors(markdown: &str) -> Vec<String> {
    prose(markdown)
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| slug(heading.trim_start_matches('#')))
        .collect()
}

/// `(target)` of every `[text](target)` outside code blocks.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(markdown) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

fn check(file: &Path, problems: &mut Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    for link in links(&text) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap().join(path)
        };
        // Outside the repository (the team's shared notes): not ours to check.
        let root = repo().canonicalize().unwrap();
        let lexical: PathBuf = target.components().fold(PathBuf::new(), |mut acc, part| {
            match part {
                std::path::Component::ParentDir => {
                    acc.pop();
                }
                other => acc.push(other),
            }
            acc
        });
        if !lexical.starts_with(&root) {
            continue;
        }
        if !target.exists() {
            problems.push(format!("{}: {link}: no such file", file.display()));
            continue;
        }
        if !anchor.is_empty() {
            let target_text = std::fs::read_to_string(&target).unwrap_or_default();
            if !anchors(&target_text).iter().any(|a| a == anchor) {
                problems.push(format!("{}: {link}: no such heading", file.display()));
            }
        }
    }
}

#[test]
fn relative_links_resolve() {
    let mut files = vec![
        repo().join("README.md"),
        repo().join("charts/originstack/README.md"),
    ];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    let mut problems = Vec::new();
    for file in &files {
        check(file, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
