//! The GVariant text form of `org.systemd.property.*` annotation values (what runc accepts,
//! through godbus's ParseVariant): `true`, `'text'`, `"text"`, `42` (int32), `1.5` (double),
//! `uint64 42` and the other type keywords, `@t 42`, `objectpath '/x'`, and arrays of those
//! (`['a', 'b']`, `@as []`, `[uint32 1, 2]`).

use super::Value;

/// Parse one value.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(None)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected {:?} after the value", &text[p.i..]));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// A basic type, by its D-Bus signature letter.
fn keyword_type(word: &str) -> Option<char> {
    Some(match word {
        "boolean" => 'b',
        "byte" => 'y',
        "int16" => 'n',
        "uint16" => 'q',
        "int32" => 'i',
        "uint32" => 'u',
        "int64" => 'x',
        "uint64" => 't',
        "double" => 'd',
        "string" => 's',
        "objectpath" => 'o',
        _ => return None,
    })
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn word(&mut self) -> &str {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"+-._".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    /// One value; `want` is the type forced by a keyword or `@sig` ('a' + elem for arrays is
    /// given as the element type through [`Parser::array`]).
    fn value(&mut self, want: Option<char>) -> Result<Value, String> {
        self.ws();
        match self.peek() {
            None => Err("empty value".into()),
            Some(b'@') => {
                self.i += 1;
                let sig = self.word().to_string();
                let mut c = sig.chars();
                match (c.next(), c.next(), c.next()) {
                    (Some('a'), Some(elem), None) => {
                        self.ws();
                        self.array(Some(elem))
                    }
                    (Some(t), None, None) => self.value(Some(t)),
                    _ => Err(format!("unsupported type @{sig}")),
                }
            }
            Some(b'[') => self.array(want),
            Some(b'\'' | b'"') => {
                let s = self.string()?;
                match want {
                    None | Some('s') => Ok(Value::Str(s)),
                    Some('o') => Ok(Value::ObjPath(s)),
                    Some(t) => Err(format!("a string where type {t} was wanted")),
                }
            }
            Some(_) => {
                let start = self.i;
                let w = self.word().to_string();
                if w.is_empty() {
                    return Err(format!(
                        "unexpected {:?}",
                        String::from_utf8_lossy(&self.s[start..])
                    ));
                }
                if let Some(t) = keyword_type(&w) {
                    if want.is_some() {
                        return Err(format!("type keyword {w} after a type"));
                    }
                    return self.value(Some(t));
                }
                scalar(&w, want)
            }
        }
    }

    fn array(&mut self, elem: Option<char>) -> Result<Value, String> {
        if self.peek() != Some(b'[') {
            return Err("expected '['".into());
        }
        self.i += 1;
        let mut items = Vec::new();
        let mut elem = elem;
        loop {
            self.ws();
            if self.peek() == Some(b']') {
                self.i += 1;
                break;
            }
            if !items.is_empty() {
                if self.peek() != Some(b',') {
                    return Err("expected ',' or ']' in an array".into());
                }
                self.i += 1;
            }
            let v = self.value(elem)?;
            // The first element fixes the type of the others (`[uint32 1, 2]`).
            elem = elem.or(Some(type_of(&v)?));
            items.push(v);
        }
        match elem {
            Some('s') | None => items
                .into_iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s),
                    _ => Err("mixed types in an array".to_string()),
                })
                .collect::<Result<_, _>>()
                .map(Value::Strs),
            Some('u') => items
                .into_iter()
                .map(|v| match v {
                    Value::U32(n) => Ok(n),
                    _ => Err("mixed types in an array".to_string()),
                })
                .collect::<Result<_, _>>()
                .map(Value::U32s),
            Some('y') => items
                .into_iter()
                .map(|v| match v {
                    Value::Byte(n) => Ok(n),
                    _ => Err("mixed types in an array".to_string()),
                })
                .collect::<Result<_, _>>()
                .map(Value::Bytes),
            Some(t) => Err(format!("arrays of type {t} are not supported")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == q {
                return String::from_utf8(out).map_err(|_| "invalid UTF-8 in a string".into());
            }
            if c == b'\\' {
                let Some(e) = self.peek() else { break };
                self.i += 1;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
        Err("unterminated string".into())
    }
}

fn type_of(v: &Value) -> Result<char, String> {
    Ok(match v {
        Value::Bool(_) => 'b',
        Value::Byte(_) => 'y',
        Value::I16(_) => 'n',
        Value::U16(_) => 'q',
        Value::I32(_) => 'i',
        Value::U32(_) => 'u',
        Value::I64(_) => 'x',
        Value::U64(_) => 't',
        Value::F64(_) => 'd',
        Value::Str(_) => 's',
        Value::ObjPath(_) => 'o',
        _ => return Err("nested arrays are not supported".into()),
    })
}

fn int(w: &str) -> Result<i128, String> {
    let (neg, digits) = match w.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, w.strip_prefix('+').unwrap_or(w)),
    };
    let n = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(h, 16)
    } else {
        digits.parse::<i128>()
    }
    .map_err(|_| format!("{w:?} is not a number"))?;
    Ok(if neg { -n } else { n })
}

fn scalar(w: &str, want: Option<char>) -> Result<Value, String> {
    let range = |t: &str| format!("{w} is out of range for {t}");
    match want {
        Some('b') | None if w == "true" || w == "false" => Ok(Value::Bool(w == "true")),
        Some('b') => Err(format!("{w:?} is not a boolean")),
        Some('d') => w
            .parse::<f64>()
            .map(Value::F64)
            .map_err(|_| format!("{w:?} is not a number")),
        None if w.contains(['.', 'e', 'E']) && !w.starts_with("0x") => w
            .parse::<f64>()
            .map(Value::F64)
            .map_err(|_| format!("{w:?} is not a number")),
        None => {
            let n = int(w)?;
            Ok(match i32::try_from(n) {
                Ok(v) => Value::I32(v),
                Err(_) => Value::I64(i64::try_from(n).map_err(|_| range("int64"))?),
            })
        }
        Some(t) => {
            let n = int(w)?;
            Ok(match t {
                'y' => Value::Byte(u8::try_from(n).map_err(|_| range("byte"))?),
                'n' => Value::I16(i16::try_from(n).map_err(|_| range("int16"))?),
                'q' => Value::U16(u16::try_from(n).map_err(|_| range("uint16"))?),
                'i' => Value::I32(i32::try_from(n).map_err(|_| range("int32"))?),
                'u' => Value::U32(u32::try_from(n).map_err(|_| range("uint32"))?),
                'x' => Value::I64(i64::try_from(n).map_err(|_| range("int64"))?),
                't' => Value::U64(u64::try_from(n).map_err(|_| range("uint64"))?),
                other => return Err(format!("a number where type {other} was wanted")),
            })
        }
    }
}
