//! The query language: words, `"phrases"`, `field:value`, `-excluded`, and phone numbers.
//!
//! ```text
//! acme renewal            every word must match (prefix and typo tolerant)
//! "acme renewal"          a phrase
//! email:ann@acme.com      scoped to a field (name, email, phone, company, title, text, tag)
//! tag:"key account"       a scoped phrase
//! -churned                a word that must not match
//! +1 (415) 555            a phone number, spaces and punctuation allowed
//! ```
//! Positions in errors count characters (not bytes) from 0.

use super::SearchError;

/// The field a clause is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Name,
    Email,
    Phone,
    Company,
    Title,
    Text,
    Tag,
}

/// The scope names accepted before a colon.
pub(crate) const SCOPE_NAMES: &str = "name, email, phone, company, title, subject, text, note, tag";

impl Scope {
    fn from_name(name: &str) -> Option<Scope> {
        Some(match name {
            "name" => Scope::Name,
            "email" | "emails" => Scope::Email,
            "phone" | "phones" | "tel" => Scope::Phone,
            "company" => Scope::Company,
            "title" | "subject" => Scope::Title,
            "text" | "note" | "notes" | "body" | "description" => Scope::Text,
            "tag" | "tags" => Scope::Tag,
            _ => return None,
        })
    }
}

/// What a clause matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matcher {
    /// One word as typed (may analyze into several tokens, e.g. `ann.lee` or Chinese).
    Word(String),
    /// Words that must appear next to each other.
    Phrase(String),
    /// A phone number as typed, possibly with spaces and punctuation.
    Phone(String),
}

/// One clause of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    pub matcher: Matcher,
    pub scope: Option<Scope>,
    pub negated: bool,
}

fn syntax(position: usize, message: impl Into<String>) -> SearchError {
    SearchError::Syntax {
        position,
        message: message.into(),
    }
}

fn is_phone_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, ' ' | '+' | '(' | ')' | '-' | '.' | '/')
}

/// The end of a phone number starting at `i` that spans spaces (`+1 (415) 555`), if there is one.
fn phone_run(chars: &[char], i: usize, scoped: bool) -> Option<usize> {
    let first = *chars.get(i)?;
    if !(first.is_ascii_digit() || first == '+' || first == '(') {
        return None;
    }
    let mut end = i;
    while end < chars.len() && is_phone_char(chars[end]) {
        end += 1;
    }
    loop {
        // A run ends on a digit or a closing parenthesis, at the end of a word.
        while end > i && !(chars[end - 1].is_ascii_digit() || chars[end - 1] == ')') {
            end -= 1;
        }
        if end == i || chars.get(end).is_none_or(|c| c.is_whitespace()) {
            break;
        }
        // "+1 415 10:30": the last chunk belongs to another word.
        end = (i..end).rev().find(|&k| chars[k] == ' ').unwrap_or(i);
    }
    let run = &chars[i..end];
    let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
    // Without a scope, only a run with inner spaces needs this rule; single chunks are words.
    (digits >= 3 && (scoped || run.contains(&' '))).then_some(end)
}

/// Parses a query into clauses.
pub(crate) fn parse(input: &str) -> Result<Vec<Clause>, SearchError> {
    let chars: Vec<char> = input.chars().collect();
    let n = chars.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let negated = chars[i] == '-';
        if negated {
            i += 1;
            if i == n || chars[i].is_whitespace() {
                return Err(syntax(start, "'-' must be followed by a word or a phrase"));
            }
        }
        let mut scope = None;
        let mut j = i;
        while j < n && chars[j].is_ascii_alphabetic() {
            j += 1;
        }
        if j > i && j < n && chars[j] == ':' {
            let name: String = chars[i..j].iter().collect::<String>().to_lowercase();
            scope = Some(
                Scope::from_name(&name).ok_or_else(|| SearchError::UnknownField {
                    field: name.clone(),
                    position: i,
                })?,
            );
            i = j + 1;
            if i == n || chars[i].is_whitespace() {
                // A scope still being typed ("email:") restricts nothing yet.
                continue;
            }
        }
        if chars[i] == '"' {
            let close = (i + 1..n).find(|&k| chars[k] == '"');
            let Some(close) = close else {
                return Err(syntax(i, "unterminated quote: add the closing '\"'"));
            };
            if close + 1 < n && !chars[close + 1].is_whitespace() {
                return Err(syntax(
                    close + 1,
                    "expected a space after the closing quote",
                ));
            }
            out.push(Clause {
                matcher: Matcher::Phrase(chars[i + 1..close].iter().collect()),
                scope,
                negated,
            });
            i = close + 1;
            continue;
        }
        let scoped_phone = scope == Some(Scope::Phone);
        if (scope.is_none() || scoped_phone)
            && let Some(end) = phone_run(&chars, i, scoped_phone)
        {
            out.push(Clause {
                matcher: Matcher::Phone(chars[i..end].iter().collect()),
                scope,
                negated,
            });
            i = end;
            continue;
        }
        let mut end = i;
        while end < n && !chars[end].is_whitespace() {
            if chars[end] == '"' {
                return Err(syntax(
                    end,
                    "a quote must start a phrase: put a space before it",
                ));
            }
            end += 1;
        }
        out.push(Clause {
            matcher: Matcher::Word(chars[i..end].iter().collect()),
            scope,
            negated,
        });
        i = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> Clause {
        Clause {
            matcher: Matcher::Word(w.to_string()),
            scope: None,
            negated: false,
        }
    }

    #[test]
    fn words_phrases_scopes_and_phones() {
        let q = parse(r#"acme "big deal" -lost email:Ann@x.io +1 (415) 555 10:30"#).unwrap();
        assert_eq!(q[0], word("acme"));
        assert_eq!(q[1].matcher, Matcher::Phrase("big deal".into()));
        assert!(q[2].negated);
        assert_eq!(q[3].scope, Some(Scope::Email));
        assert_eq!(q[4].matcher, Matcher::Phone("+1 (415) 555".into()));
        assert_eq!(q[5], word("10:30"));
        assert_eq!(
            parse("2024 budget").unwrap(),
            [word("2024"), word("budget")]
        );
    }

    #[test]
    fn errors_name_the_position() {
        match parse(r#"acme "big deal"#) {
            Err(SearchError::Syntax { position, .. }) => assert_eq!(position, 5),
            other => panic!("{other:?}"),
        }
        match parse("张三 emial:x") {
            Err(SearchError::UnknownField { field, position }) => {
                assert_eq!((field.as_str(), position), ("emial", 3));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse("a - b").is_err());
        assert!(parse("email:").unwrap().is_empty());
    }
}
