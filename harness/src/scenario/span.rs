//! Maps a key path (`check[2].port`) back to a line and column of the TOML
//! source, so that a validation error points where the user has to look.

use toml_edit::{ImDocument, Item};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl PathSeg {
    pub fn key(s: &str) -> PathSeg {
        PathSeg::Key(s.to_owned())
    }
}

pub fn display(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) if out.is_empty() => out.push_str(k),
            PathSeg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub struct Locator<'a> {
    text: &'a str,
    doc: Option<ImDocument<&'a str>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator { text, doc: ImDocument::parse(text).ok() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
        (line, col)
    }

    /// The offset of the value at `path`, if the file spells it out.
    pub fn offset_of(&self, path: &[PathSeg]) -> Option<usize> {
        self.walk(path).and_then(|(item, exact)| exact.then_some(item))
    }

    /// The offset of the deepest part of `path` that the file spells out, for
    /// values that come from defaults.
    pub fn nearest_offset(&self, path: &[PathSeg]) -> Option<usize> {
        self.walk(path).map(|(off, _)| off)
    }

    fn walk(&self, path: &[PathSeg]) -> Option<(usize, bool)> {
        let doc = self.doc.as_ref()?;
        let mut item: &Item = doc.as_item();
        let mut best = None;
        for (i, seg) in path.iter().enumerate() {
            let next = match seg {
                PathSeg::Key(k) => item.get(k.as_str()),
                PathSeg::Index(n) => item.get(*n),
            };
            match next {
                Some(n) => {
                    item = n;
                    if let Some(off) = span_start(item) {
                        best = Some((off, i + 1 == path.len()));
                    }
                }
                None => break,
            }
        }
        best
    }
}

fn span_start(item: &Item) -> Option<usize> {
    match item {
        Item::Value(v) => v.span().map(|s| s.start),
        Item::Table(t) => t.span().map(|s| s.start),
        Item::ArrayOfTables(a) => a.span().map(|s| s.start),
        Item::None => None,
    }
}
