//! The repository stands alone: every relative link in every Markdown file of the repository
//! points at a file inside it that exists and, with `#anchor`, at a heading that exists
//! (GitHub's heading slugs); a link that leaves the repository is an error, not a skip. And no
//! file of the repository names a path outside it (the team's shared folder beside the
//! checkout, or absolute paths of the machine it was written on).
//!
//! Files are those git knows (tracked, plus new files not ignored), so build output and other
//! ignored files are left out; without git the tree is walked instead.

use std::{
    path::{Component, Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Every file of the repository, relative to its root: what `git ls-files` lists (tracked
/// files and new ones not ignored; deleted ones left out), or a walk of the tree skipping
/// hidden and `target` directories when git cannot answer.
fn repository_files() -> Vec<PathBuf> {
    let root = repo();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output();
    let mut files: Vec<PathBuf> = match listed {
        Ok(output) if output.status.success() => output
            .stdout
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            .filter(|path| root.join(path).is_file())
            .collect(),
        _ => {
            let mut found = Vec::new();
            walk(&root, &root, &mut found);
            found
        }
    };
    files.sort();
    files.dedup();
    assert!(
        files.iter().any(|f| f == Path::new("README.md")),
        "found no README.md in {}: the file list is wrong",
        root.display()
    );
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(root, &path, out);
            }
        } else if path.is_file() {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

fn markdown_files() -> Vec<PathBuf> {
    repository_files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect()
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

/// The lines of a Markdown text outside fenced code blocks, with their line numbers.
fn prose(markdown: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut in_code = false;
    markdown.lines().enumerate().filter_map(move |(at, line)| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code = !in_code;
            return None;
        }
        (!in_code).then_some((at + 1, line))
    })
}

fn anchors(markdown: &str) -> Vec<String> {
    prose(markdown)
        .filter_map(|(_, line)| line.strip_prefix('#'))
        .map(|heading| slug(heading.trim_start_matches('#')))
        .collect()
}

/// A link target as written: `<path>` loses its brackets, a `"title"` after a space is dropped.
fn clean_target(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('<').and_then(|r| r.split('>').next()) {
        return inner.to_string();
    }
    raw.split_whitespace().next().unwrap_or("").to_string()
}

/// `(line, target)` of every `[text](target)` and every reference definition `[label]: target`
/// outside code blocks.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (number, line) in prose(markdown) {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find("]:")
            && !trimmed[..close].contains("](")
        {
            out.push((number, clean_target(&trimmed[close + 2..])));
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                out.push((number, clean_target(&rest[..end])));
                rest = &rest[end..];
            }
        }
    }
    out
}

/// `path` with `.` and `..` applied without touching the file system (a target that does not
/// exist still has a place, inside the repository or not).
fn lexical(path: &Path) -> PathBuf {
    path.components().fold(PathBuf::new(), |mut acc, part| {
        match part {
            Component::ParentDir => {
                acc.pop();
            }
            Component::CurDir => {}
            other => acc.push(other),
        }
        acc
    })
}

fn check(root: &Path, relative: &Path, problems: &mut Vec<String>) {
    let file = root.join(relative);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|err| panic!("{}: {err}", relative.display()));
    for (line, link) in links(&text) {
        let here = format!("{}:{line}: link {link:?}", relative.display());
        if link.is_empty() {
            problems.push(format!("{here}: empty target"));
            continue;
        }
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let path = path.split('?').next().unwrap_or("");
        if path.starts_with('/') {
            problems.push(format!(
                "{here}: an absolute path; link relative to the file, inside the repository"
            ));
            continue;
        }
        let target = if path.is_empty() {
            file.clone()
        } else {
            lexical(&file.parent().unwrap().join(path))
        };
        if !target.starts_with(root) {
            problems.push(format!(
                "{here}: leaves the repository (resolves to {}); everything a user needs must be \
                 inside it",
                target.display()
            ));
            continue;
        }
        if !target.exists() {
            problems.push(format!("{here}: no such file"));
            continue;
        }
        if !anchor.is_empty() {
            let target_text = std::fs::read_to_string(&target).unwrap_or_default();
            if !anchors(&target_text).iter().any(|a| a == anchor) {
                problems.push(format!("{here}: no such heading"));
            }
        }
    }
}

#[test]
fn relative_links_resolve_inside_the_repository() {
    let root = repo();
    let files = markdown_files();
    for expected in [
        "README.md",
        "docs/interfaces.md",
        "charts/originstack/README.md",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(expected)),
            "{expected} is not among the Markdown files checked: {files:?}"
        );
    }
    let mut problems = Vec::new();
    for file in &files {
        check(&root, file, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Where `needle` occurs in `haystack` as the start of a path: not glued to a longer name
/// before it (so `host.example/<dir>/` in a URL does not count, `"/<dir>/` does).
fn path_occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let glued = |b: u8| b.is_ascii_alphanumeric() || b"._-~%$".contains(&b);
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(at, window)| *window == needle && (*at == 0 || !glued(haystack[at - 1])))
        .map(|(at, _)| at)
        .collect()
}

#[test]
fn no_file_names_a_path_outside_the_repository() {
    // Spelled in pieces so that this file does not contain what it looks for.
    let shared_notes = concat!("..", "/shared/");
    let work_dir = concat!("/", "work/");
    let root = repo();
    let mut problems = Vec::new();
    for file in repository_files() {
        let bytes = std::fs::read(root.join(&file)).unwrap();
        let line_of = |at: usize| bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let shared = bytes
            .windows(shared_notes.len())
            .position(|w| w == shared_notes.as_bytes());
        if let Some(at) = shared {
            problems.push(format!(
                "{}:{}: names {shared_notes:?}, a folder outside the repository",
                file.display(),
                line_of(at)
            ));
        }
        if let Some(&at) = path_occurrences(&bytes, work_dir.as_bytes()).first() {
            problems.push(format!(
                "{}:{}: names an absolute path under {work_dir:?}, which exists only on the \
                 machine it was written on",
                file.display(),
                line_of(at)
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
