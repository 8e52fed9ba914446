//! What is wrong with a configuration, said so that the user can fix it: the file, line
//! and column, the key, what is allowed there, and the source line with a caret.
//!
//! miette renders the messages because nextest-filtering's parse errors are already miette
//! diagnostics with spans: one renderer shows both a TOML mistake and a filterset mistake
//! inside an override.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use toml::de::{DeTable, DeValue};

use super::filterset::FiltersetError;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    #[diagnostic(help("fix the file's permissions, or remove it"))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(Box<FileError>),
    #[error("{var}={value:?}: {message}")]
    #[diagnostic(help("{help}"))]
    Env {
        var: String,
        value: String,
        message: String,
        help: String,
    },
    #[error("`{key}` (set {place}) is not supported by this build of cargo-isotest yet")]
    #[diagnostic(help(
        "{why}; remove the key until a cargo-isotest that supports it (see the book's configuration reference)"
    ))]
    Unsupported {
        key: String,
        place: String,
        why: &'static str,
    },
    #[error("there is no profile `{name}`")]
    #[diagnostic(help("{help}"))]
    UnknownProfile { name: String, help: String },
}

/// A mistake at one place of a config file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The dotted key the mistake is at, when there is one.
    pub key: Option<String>,
    pub message: String,
    #[source_code]
    src: NamedSource<Arc<String>>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
    /// A filterset's own errors, shown against the expression.
    #[related]
    related: Vec<FiltersetError>,
}

/// A config file's text, to point into.
#[derive(Clone, Debug)]
pub struct Document {
    pub path: PathBuf,
    pub text: Arc<String>,
}

impl Document {
    pub fn new(path: &Path, text: String) -> Document {
        Document {
            path: path.to_path_buf(),
            text: Arc::new(text),
        }
    }

    /// An error at `span`, naming the key found there.
    pub fn error(&self, span: Range<usize>, message: String, label: String) -> FileError {
        let (line, column) = line_column(&self.text, span.start);
        FileError {
            path: self.path.clone(),
            line,
            column,
            key: key_at(&self.text, span.start),
            message,
            src: NamedSource::new(self.path.display().to_string(), self.text.clone()),
            span: span.into(),
            label,
            help: None,
            related: Vec::new(),
        }
    }

    /// What the TOML parser or the deserializer said, made specific: the key, and for an
    /// unknown key or value what is allowed and the nearest allowed one.
    pub fn toml_error(&self, error: &toml::de::Error) -> FileError {
        let span = error.span().unwrap_or(0..0);
        let said = error.message().trim().to_string();
        if DeTable::parse(&self.text).is_err() {
            return self.error(span, "this is not valid TOML".into(), said);
        }
        let mut file_error = self.error(span, String::new(), String::new());
        let key = file_error.key.clone().unwrap_or_default();
        let (message, label, help) = match unknown(&said) {
            Some(("field", name, allowed)) => {
                let table = key.rsplit_once('.').map_or("the top level", |(t, _)| t);
                let help = if super::settings::run_keys().contains(&name)
                    && table.contains(".overrides")
                {
                    format!(
                        "`{name}` applies to the whole run: set it in the profile, not in an override"
                    )
                } else {
                    suggest(&name, &allowed, "keys")
                };
                (
                    format!("unknown key `{name}` in `{table}`"),
                    "unknown key".into(),
                    help,
                )
            }
            Some((_, name, allowed)) => (
                format!("`{key}` cannot be `{name}`"),
                "not an allowed value".into(),
                suggest(&name, &allowed, "values"),
            ),
            None if said.starts_with("missing field") => {
                (format!("`{key}`: {said}"), said.clone(), String::new())
            }
            None => (format!("invalid value for `{key}`"), said, String::new()),
        };
        file_error.message = message;
        file_error.label = label;
        file_error.help = (!help.is_empty()).then_some(help);
        file_error
    }
}

impl FileError {
    pub fn with_help(mut self, help: impl Into<String>) -> FileError {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, related: FiltersetError) -> FileError {
        self.related.push(related);
        self
    }
}

impl From<FileError> for ConfigError {
    fn from(error: FileError) -> ConfigError {
        ConfigError::File(Box::new(error))
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or variant), taken apart: the
/// kind, the name, and the allowed names. serde words these messages itself
/// (`de::Error::unknown_field`), so their shape is stable.
fn unknown(message: &str) -> Option<(&'static str, String, Vec<String>)> {
    let (kind, rest) = if let Some(rest) = message.strip_prefix("unknown field ") {
        ("field", rest)
    } else {
        ("variant", message.strip_prefix("unknown variant ")?)
    };
    let quoted: Vec<String> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    let (name, allowed) = quoted.split_first()?;
    Some((kind, name.clone(), allowed.to_vec()))
}

/// "did you mean `net`? allowed keys: …".
pub fn suggest(name: &str, allowed: &[String], what: &str) -> String {
    let list = allowed
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let allowed_text = if list.is_empty() {
        format!("no {what} are allowed here")
    } else {
        format!("allowed {what}: {list}")
    };
    match nearest(name, allowed) {
        Some(near) => format!("did you mean `{near}`? {allowed_text}"),
        None => allowed_text,
    }
}

/// The allowed name nearest to a mistyped one, if any is near.
pub fn nearest<'a>(name: &str, allowed: &'a [String]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(name, a), a))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a.as_str())
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted path of the deepest key whose name or scalar value holds `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(table.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn find_in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset)
            || find_in_value(value.get_ref(), value.span(), offset, path)
        {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(
    value: &DeValue<'_>,
    span: Range<usize>,
    offset: usize,
    path: &mut Vec<String>,
) -> bool {
    match value {
        DeValue::Table(table) => find_in_table(table, offset, path),
        DeValue::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let last = path.pop().unwrap_or_default();
            path.push(format!("{last}[{i}]"));
            if find_in_value(item.get_ref(), item.span(), offset, path) {
                return true;
            }
            path.pop();
            path.push(last);
            false
        }),
        _ => span.contains(&offset),
    }
}

/// A diagnostic as the terminal shows it: with colours, or plain for logs and tests.
pub fn render(diagnostic: &dyn Diagnostic, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    match GraphicalReportHandler::new_themed(theme)
        .with_wrap_lines(false)
        .render_report(&mut out, diagnostic)
    {
        Ok(()) => out,
        Err(_) => diagnostic.to_string(),
    }
}
