//! A parser of DevStack's `local.conf` that reads it the way DevStack's
//! `inc/meta-config` does. Each rule below names the awk expression it mirrors, because
//! the point of this module is to agree with DevStack byte for byte, including where
//! DevStack is surprising (a header's file name ends at the first blank, an indented
//! option is silently ignored, a key without `=` becomes an empty key).

use serde::Serialize;

/// One `local.conf`, as DevStack sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocalConf {
    /// One entry per distinct (group, file), in order of first appearance.
    pub files: Vec<MetaFile>,
    /// The `[[local|localrc]]` section, which `stack.sh` sources as shell.
    pub localrc: Localrc,
    /// Every meta header, even those DevStack ignores (for the linter).
    #[serde(skip)]
    pub headers: Vec<MetaHeader>,
    /// The records awk reads: the text split on `\n` (a `\r` stays in the line).
    #[serde(skip)]
    pub source_lines: Vec<String>,
}

/// A line that matched `^\[\[.+\|.*\]\]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaHeader {
    pub line: usize,
    pub group: String,
    pub file: String,
    /// The header text after the first blank: DevStack drops it.
    pub dropped_tail: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetaFile {
    pub group: String,
    pub file: String,
    /// Line of the first header for this (group, file).
    pub line: usize,
    /// The body lines, as `get_meta_section` prints them (bodies of repeated
    /// headers concatenated).
    pub lines: Vec<String>,
    /// What `merge_config_file` would `iniset`, in order of first appearance.
    pub options: Vec<IniOption>,
    /// The local.conf line number of each entry of `lines`.
    #[serde(skip)]
    pub line_numbers: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IniOption {
    pub section: String,
    pub key: String,
    /// Raw values (no shell expansion), in local.conf order.
    pub values: Vec<String>,
    /// Line of the first occurrence.
    pub line: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Localrc {
    pub assignments: Vec<Assignment>,
    /// Commands such as `enable_service q-l3`, in order.
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assignment {
    pub name: String,
    /// `NAME+=value`: appends to the variable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub append: bool,
    /// The value after shell quote removal, with `$VAR` references left as written.
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Command {
    pub name: String,
    pub args: Vec<String>,
    pub line: usize,
}

/// awk's records: split on `\n`, no empty record after a final newline.
fn records(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if text.ends_with('\n') || text.is_empty() {
        lines.pop();
    }
    lines
}

/// awk's default field splitting: `$1` is the text up to the first space or tab,
/// after leading blanks.
fn first_field(line: &str) -> &str {
    let trimmed = line.trim_start_matches([' ', '\t']);
    trimmed.split([' ', '\t']).next().unwrap_or("")
}

/// `/^\[\[.+\|.*\]\]/`: starts with `[[`, a `|` after at least one more character,
/// and `]]` somewhere after that `|`.
pub fn is_meta_header(line: &str) -> bool {
    let b = line.as_bytes();
    if !line.starts_with("[[") {
        return false;
    }
    // The earliest `|` at index >= 3 leaves the most room for the `]]` after it.
    match b.iter().skip(3).position(|&c| c == b'|') {
        Some(p) => line[3 + p + 1..].contains("]]"),
        None => false,
    }
}

/// `gsub("[][]", "", $1); split($1, a, "|")`: returns (a[1], a[2]).
fn header_group_file(line: &str) -> (String, String, Option<String>) {
    let field = first_field(line);
    let tail = line[field.len()..].trim_matches([' ', '\t']);
    let stripped: String = field.chars().filter(|&c| c != '[' && c != ']').collect();
    let mut parts = stripped.split('|');
    let group = parts.next().unwrap_or("").to_owned();
    let file = parts.next().unwrap_or("").to_owned();
    let dropped = (!tail.is_empty()).then(|| tail.to_owned());
    (group, file, dropped)
}

pub fn parse(text: &str) -> LocalConf {
    let lines = records(text);
    let mut files: Vec<MetaFile> = Vec::new();
    let mut headers = Vec::new();
    let mut current: Option<usize> = None;

    for (i, line) in lines.iter().enumerate() {
        let lineno = i + 1;
        if is_meta_header(line) {
            let (group, file, dropped_tail) = header_group_file(line);
            headers.push(MetaHeader { line: lineno, group: group.clone(), file: file.clone(), dropped_tail });
            // get_meta_section returns nothing for an empty file name.
            current = if file.is_empty() {
                None
            } else if let Some(idx) = files.iter().position(|f| f.group == group && f.file == file) {
                Some(idx)
            } else {
                files.push(MetaFile { group, file, line: lineno, lines: Vec::new(), options: Vec::new(), line_numbers: Vec::new() });
                Some(files.len() - 1)
            };
            continue;
        }
        if let Some(idx) = current {
            files[idx].lines.push(line.clone());
            files[idx].line_numbers.push(lineno);
        }
    }

    for f in &mut files {
        f.options = ini_options(&f.lines, &f.line_numbers);
    }
    // stack.sh only reads [[local|localrc]]; other files of the local group are ignored.
    let localrc = files
        .iter()
        .find(|f| f.group == "local" && f.file == "localrc")
        .map(|f| parse_localrc(&f.lines, &f.line_numbers))
        .unwrap_or_default();

    LocalConf { files, localrc, headers, source_lines: lines }
}

/// The awk program of `merge_config_file`, keeping only what `iniset` acts on.
fn ini_options(lines: &[String], numbers: &[usize]) -> Vec<IniOption> {
    let mut section = String::new();
    let mut options: Vec<IniOption> = Vec::new();
    for (line, &lineno) in lines.iter().zip(numbers) {
        // /^\[.+\]/ : a `[`, at least one character, then a `]`.
        if line.starts_with('[') && line.as_bytes().iter().skip(2).any(|&c| c == b']') {
            section = first_field(line).chars().filter(|&c| c != '[' && c != ']').collect();
            continue;
        }
        // /^ *\#/ : a comment (spaces only; a tab-indented `#` is not one, but
        // the next rule skips it anyway).
        if line.trim_start_matches(' ').starts_with('#') {
            continue;
        }
        // /^[^ \t]+/ : anything else that does not start with a blank.
        match line.chars().next() {
            None | Some(' ') | Some('\t') => continue,
            Some(_) => {}
        }
        let (key, value) = match line.find('=') {
            Some(eq) => (&line[..eq], &line[eq + 1..]),
            // index() is 0: substr($0, 1, -1) is "", the value is the whole line.
            None => ("", line.as_str()),
        };
        let key = key.trim_end_matches([' ', '\t']);
        let value = value.trim_matches([' ', '\t']);
        // iniset returns early on an empty section or option name.
        if section.is_empty() || key.is_empty() {
            continue;
        }
        match options.iter_mut().find(|o| o.section == section && o.key == key) {
            Some(o) => o.values.push(value.to_owned()),
            None => options.push(IniOption { section: section.clone(), key: key.to_owned(), values: vec![value.to_owned()], line: lineno }),
        }
    }
    options
}

/// The localrc body is sourced by bash; this reads the simple forms people write:
/// `NAME=value` assignments and `word args...` commands. Lines with shell
/// constructs beyond that (if/for/functions) are ignored.
fn parse_localrc(lines: &[String], numbers: &[usize]) -> Localrc {
    let mut rc = Localrc::default();
    for (line, &lineno) in lines.iter().zip(numbers) {
        let trimmed = line.trim_start_matches([' ', '\t']);
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some((name, append, rest)) = split_assignment(trimmed) {
            rc.assignments.push(Assignment { name: name.to_owned(), append, value: shell_word(rest), line: lineno });
            continue;
        }
        let words = shell_words(trimmed);
        if let Some((name, args)) = words.split_first() {
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                rc.commands.push(Command { name: name.clone(), args: args.to_vec(), line: lineno });
            }
        }
    }
    rc
}

/// `NAME=...` or `NAME+=...` where NAME is a shell identifier.
pub fn split_assignment(s: &str) -> Option<(&str, bool, &str)> {
    let eq = s.find('=')?;
    let (name, append) = match s[..eq].strip_suffix('+') {
        Some(n) => (n, true),
        None => (&s[..eq], false),
    };
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name, append, &s[eq + 1..]))
}

/// Quote removal for one shell word (the value of an assignment), stopping at an
/// unquoted blank or at a comment. `$VAR` is kept as written.
fn shell_word(s: &str) -> String {
    shell_words_inner(s, true).into_iter().next().unwrap_or_default()
}

fn shell_words(s: &str) -> Vec<String> {
    shell_words_inner(s, false)
}

fn shell_words_inner(s: &str, first_only: bool) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            '#' if !in_word => break,
            ' ' | '\t' | '\r' | ';' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                    if first_only {
                        return words;
                    }
                }
                if c == ';' {
                    break;
                }
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word || (first_only && words.is_empty()) {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_regex_matches_like_awk() {
        assert!(is_meta_header("[[local|localrc]]"));
        assert!(is_meta_header("[[post-config|$NOVA_CONF]] trailing"));
        assert!(is_meta_header("[[a|]]"));
        assert!(is_meta_header("[[||]]"));
        assert!(!is_meta_header("[[|x]]"), ".+ needs one character before the bar");
        assert!(!is_meta_header(" [[local|localrc]]"));
        assert!(!is_meta_header("[[local-localrc]]"));
        assert!(!is_meta_header("[[local|localrc]"));
    }

    #[test]
    fn header_fields() {
        let (g, f, t) = header_group_file("[[post-config|/etc/my file.conf]]");
        assert_eq!((g.as_str(), f.as_str(), t.as_deref()), ("post-config", "/etc/my", Some("file.conf]]")));
        let (g, f, _) = header_group_file("[[a|b|c]]");
        assert_eq!((g.as_str(), f.as_str()), ("a", "b"));
    }

    #[test]
    fn shell_values() {
        assert_eq!(shell_word("\"172.18.161.0/24\""), "172.18.161.0/24");
        assert_eq!(shell_word("start=1,end=2 # c"), "start=1,end=2");
        assert_eq!(shell_word("${NETWORK_GATEWAY:-15.0.0.1}"), "${NETWORK_GATEWAY:-15.0.0.1}");
        assert_eq!(shell_word("'a b'"), "a b");
        assert_eq!(shell_word(""), "");
    }
}
