//! The `Sec-WebSocket-Extensions` header (RFC 6455 §9.1):
//!
//! ```text
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```

use super::http::Headers;

/// One extension item of a `Sec-WebSocket-Extensions` header: its name and
/// its parameters in order (a quoted value is unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionItem {
    /// The extension token, such as `permessage-deflate`.
    pub name: String,
    /// Parameters with their value, if any.
    pub params: Vec<(String, Option<String>)>,
}

/// Every extension item of every `Sec-WebSocket-Extensions` line, in order.
/// A line that breaks the grammar gives an error naming it.
pub fn parse_extensions(headers: &Headers) -> Result<Vec<ExtensionItem>, String> {
    let mut items = Vec::new();
    for line in headers.get_all("sec-websocket-extensions") {
        let text = std::str::from_utf8(line)
            .map_err(|_| "Sec-WebSocket-Extensions is not UTF-8".to_owned())?;
        parse_line(text, &mut items).map_err(|e| format!("{e} in {text:?}"))?;
    }
    Ok(items)
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn skip_ows(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, &'static str> {
        // The opening quote is current.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let c = *self.s.get(self.i + 1).ok_or("unterminated quoted string")?;
                    out.push(c);
                    self.i += 2;
                }
                Some(c) if c == b'\t' || c >= 0x20 && c != 0x7f => {
                    out.push(c);
                    self.i += 1;
                }
                Some(_) => return Err("control character in quoted string"),
            }
        }
    }
}

fn parse_line(text: &str, items: &mut Vec<ExtensionItem>) -> Result<(), &'static str> {
    let mut c = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    loop {
        c.skip_ows();
        match c.peek() {
            None => return Ok(()),
            // Empty list elements are allowed by the #rule.
            Some(b',') => {
                c.i += 1;
                continue;
            }
            _ => {}
        }
        let name = c.token().ok_or("expected an extension name")?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            match c.peek() {
                None => {
                    items.push(ExtensionItem { name, params });
                    return Ok(());
                }
                Some(b',') => {
                    c.i += 1;
                    items.push(ExtensionItem { name, params });
                    break;
                }
                Some(b';') => {
                    c.i += 1;
                    c.skip_ows();
                    let key = c.token().ok_or("expected a parameter name")?;
                    c.skip_ows();
                    let value = if c.peek() == Some(b'=') {
                        c.i += 1;
                        c.skip_ows();
                        Some(if c.peek() == Some(b'"') {
                            c.quoted()?
                        } else {
                            c.token().ok_or("expected a parameter value")?
                        })
                    } else {
                        None
                    };
                    params.push((key, value));
                }
                Some(_) => return Err("unexpected character"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Vec<ExtensionItem>, String> {
        let mut headers = Headers::new();
        headers.push("Host", "x");
        for l in lines {
            headers.push("Sec-WebSocket-Extensions", l.as_bytes());
        }
        parse_extensions(&headers)
    }

    #[test]
    fn items_params_and_quoted_values() {
        let items = parse(&[
            "permessage-deflate; client_max_window_bits, permessage-deflate;server_max_window_bits=\"10\"",
            " x-foo ;a=b ; c",
        ])
        .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].name, "permessage-deflate");
        assert_eq!(
            items[0].params,
            vec![("client_max_window_bits".into(), None)]
        );
        assert_eq!(
            items[1].params,
            vec![("server_max_window_bits".into(), Some("10".into()))]
        );
        assert_eq!(items[2].name, "x-foo");
        assert_eq!(
            items[2].params,
            vec![("a".into(), Some("b".into())), ("c".into(), None)]
        );
    }

    #[test]
    fn grammar_errors() {
        assert!(parse(&["permessage-deflate; =1"]).is_err());
        assert!(parse(&["permessage-deflate; a=\"1"]).is_err());
        assert!(parse(&["; a"]).is_err());
        assert!(parse(&["a b"]).is_err());
        assert!(parse(&["a; b="]).is_err());
        assert_eq!(parse(&[", ,a"]).unwrap().len(), 1);
        assert!(parse(&[]).unwrap().is_empty());
    }
}
