//! SQL injection by tokenising, libinjection's approach written for weft: the input is read
//! as SQL in three contexts (as is, as if it began inside a `'` string, inside a `"` string),
//! and each token stream is judged by the shapes injections take — breaking out of a string
//! into a logic operator, comment or clause, a tautology after a number, a stacked query,
//! `UNION SELECT`, a subquery, a dangerous function — rather than by keywords alone, so prose
//! that mentions "select" or "or" passes.

use super::decode::find;

/// Tokens judged per context at most (bounds the work on long values).
const MAX_TOKENS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Union,
    Select,
    /// A statement that may follow `;` (insert, update, delete, drop, ...).
    Stackable,
    /// A clause that may follow a broken-out string (order, group, having, limit, into, ...).
    Clause,
    /// Modifiers skipped between UNION and SELECT.
    AllDistinct,
    From,
    By,
    /// `true`, `false`, `null`: values.
    Literal,
    Not,
    Waitfor,
    /// table, database, view, index, function: what DDL acts on.
    Object,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Str {
        closed: bool,
    },
    Num,
    Word,
    Kw(Kw),
    /// AND, OR, XOR, &&, ||
    Logic,
    /// =, <, >, <>, !=, LIKE, IN, IS, BETWEEN, REGEXP, ...
    Cmp,
    Op,
    LParen,
    RParen,
    Comma,
    Semi,
    Comment,
    Var,
    /// A word directly before `(`; `true`: one injections use.
    Func {
        dangerous: bool,
    },
    Other,
}

impl Tok {
    fn is_value(self) -> bool {
        matches!(
            self,
            Tok::Str { .. }
                | Tok::Num
                | Tok::Word
                | Tok::Var
                | Tok::Kw(Kw::Literal)
                | Tok::Func { .. }
        )
    }
}

const DANGEROUS_FUNCS: [&str; 24] = [
    "sleep",
    "benchmark",
    "pg_sleep",
    "load_file",
    "extractvalue",
    "updatexml",
    "xp_cmdshell",
    "sys_eval",
    "sys_exec",
    "group_concat",
    "concat_ws",
    "randomblob",
    "dbms_pipe.receive_message",
    "utl_inaddr.get_host_name",
    "utl_http.request",
    "version",
    "database",
    "current_user",
    "system_user",
    "session_user",
    "user",
    "schema",
    "@@version",
    INFORMATION_SCHEMA,
];

/// A word holding this names the catalogue: a dangerous function (in [`DANGEROUS_FUNCS`]).
const INFORMATION_SCHEMA: &str = "information_schema";

fn keyword(word: &str) -> Option<Tok> {
    let kw = match word {
        "union" => Kw::Union,
        "select" => Kw::Select,
        "insert" | "update" | "delete" | "drop" | "create" | "alter" | "truncate" | "exec"
        | "execute" | "declare" | "shutdown" | "grant" | "revoke" => Kw::Stackable,
        "table" | "database" | "view" | "index" | "function" | "trigger" => Kw::Object,
        "order" | "group" | "having" | "limit" | "into" | "procedure" | "offset" | "where" => {
            Kw::Clause
        }
        "all" | "distinct" => Kw::AllDistinct,
        "from" => Kw::From,
        "by" => Kw::By,
        "true" | "false" | "null" => Kw::Literal,
        "not" => Kw::Not,
        "waitfor" => Kw::Waitfor,
        "and" | "or" | "xor" => return Some(Tok::Logic),
        "like" | "rlike" | "regexp" | "in" | "is" | "between" | "sounds" | "div" | "mod" => {
            return Some(Tok::Cmp)
        }
        "case" | "when" | "then" | "else" | "end" | "values" | "set" | "cast" | "convert"
        | "char" | "ascii" | "substring" | "concat" => Kw::Other,
        _ => return None,
    };
    Some(Tok::Kw(kw))
}

/// The tokens of `input` (normalised: lower case), starting inside a `quote` string when
/// given. Comments are tokens; a MySQL `/*! ... */` comment's content is read as SQL.
fn tokenise(input: &str, quote: Option<u8>) -> Vec<Tok> {
    let b = input.as_bytes();
    // One token per loop turn, at most one per byte: never grown.
    let mut toks = Vec::with_capacity(MAX_TOKENS.min(b.len() + 1));
    let mut i = 0;
    if let Some(q) = quote {
        let (end, closed) = string_end(b, 0, q);
        toks.push(Tok::Str { closed });
        i = end;
    }
    while let Some(&c) = b.get(i) {
        if toks.len() >= MAX_TOKENS {
            break;
        }
        let next = b.get(i + 1).copied();
        match c {
            _ if c.is_ascii_whitespace() || c == 0x0b || c == 0xa0 => i += 1,
            b'\'' | b'"' => {
                let (end, closed) = string_end(b, i + 1, c);
                toks.push(Tok::Str { closed });
                i = end;
            }
            b'`' => {
                let (end, _) = string_end(b, i + 1, c);
                toks.push(Tok::Word);
                i = end;
            }
            b'-' if next == Some(b'-') => {
                toks.push(Tok::Comment);
                i = line_end(b, i);
            }
            b'#' => {
                toks.push(Tok::Comment);
                i = line_end(b, i);
            }
            b'/' if next == Some(b'*') => {
                if b.get(i + 2) == Some(&b'!') {
                    // Versioned comment: MySQL runs its content.
                    i += 3;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                } else {
                    toks.push(Tok::Comment);
                    i = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
                }
            }
            b'*' if next == Some(b'/') => i += 2,
            b'0'..=b'9' => {
                toks.push(Tok::Num);
                i = number_end(b, i);
            }
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                toks.push(Tok::Num);
                i = number_end(b, i + 1);
            }
            b'@' => {
                let start = i;
                i += 1;
                while b.get(i) == Some(&b'@') {
                    i += 1;
                }
                i = word_end(b, i);
                let name = input.get(start..i).unwrap_or("");
                toks.push(if name == "@@version" {
                    Tok::Func { dangerous: true }
                } else {
                    Tok::Var
                });
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                let start = i;
                i = word_end(b, i);
                let word = input.get(start..i).unwrap_or("");
                let paren = b.get(skip_space(b, i)) == Some(&b'(');
                let tok = if paren && keyword(word).is_none_or(|t| t == Tok::Kw(Kw::Other)) {
                    Tok::Func {
                        dangerous: DANGEROUS_FUNCS.contains(&word),
                    }
                } else if word.len() >= INFORMATION_SCHEMA.len()
                    && word.contains(INFORMATION_SCHEMA)
                {
                    Tok::Func { dangerous: true }
                } else {
                    keyword(word).unwrap_or(Tok::Word)
                };
                toks.push(tok);
            }
            b'(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b';' => {
                toks.push(Tok::Semi);
                i += 1;
            }
            b'|' if next == Some(b'|') => {
                toks.push(Tok::Logic);
                i += 2;
            }
            b'&' if next == Some(b'&') => {
                toks.push(Tok::Logic);
                i += 2;
            }
            b'=' | b'<' | b'>' => {
                toks.push(Tok::Cmp);
                i += 1;
                while matches!(b.get(i), Some(b'=' | b'<' | b'>')) {
                    i += 1;
                }
            }
            b'!' if next == Some(b'=') => {
                toks.push(Tok::Cmp);
                i += 2;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'|' | b'&' | b'~' | b'!' | b':' => {
                toks.push(Tok::Op);
                i += 1;
            }
            _ => {
                toks.push(Tok::Other);
                // One token per run of other characters (unicode text is one word).
                let len = input
                    .get(i..)
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                i += len;
                while let Some(&n) = b.get(i) {
                    if n.is_ascii() {
                        break;
                    }
                    i += 1;
                }
            }
        }
    }
    toks
}

fn string_end(b: &[u8], mut i: usize, q: u8) -> (usize, bool) {
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (i + 1, true);
        }
        i += 1;
    }
    (b.len(), false)
}

fn line_end(b: &[u8], i: usize) -> usize {
    find(b, i, b"\n").unwrap_or(b.len())
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'b')) {
        i += 2;
        while b.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        return i;
    }
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_digit() || *c == b'.' || *c == b'e')
    {
        i += 1;
    }
    i
}

fn word_end(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'.'))
    {
        i += 1;
    }
    i
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Position in `all` (comments included) of the `n`-th token of `code` (comments left out).
fn all_index(all: &[Tok], n: usize) -> usize {
    let mut seen = 0;
    for (i, t) in all.iter().enumerate() {
        if *t == Tok::Comment {
            continue;
        }
        if seen == n {
            return i;
        }
        seen += 1;
    }
    all.len()
}

/// `rest` starts at a `;`: whether a statement follows it (a statement keyword and, within
/// three tokens, what such a statement acts on, or nothing more: `; shutdown --`).
fn stacked(rest: &[Tok]) -> bool {
    let mut it = rest.iter().skip(1).filter(|t| **t != Tok::Comment);
    let Some(Tok::Kw(kw @ (Kw::Stackable | Kw::Select | Kw::Waitfor))) = it.next() else {
        return false;
    };
    if *kw == Kw::Waitfor {
        return true;
    }
    let after: Vec<&Tok> = rest.iter().skip(2).take(4).collect();
    after.is_empty()
        || after.iter().take(3).any(|t| {
            matches!(
                t,
                Tok::Kw(Kw::Object | Kw::From | Kw::Clause | Kw::Other | Kw::Literal)
                    | Tok::Var
                    | Tok::Func { .. }
                    | Tok::Comment
                    | Tok::Str { .. }
                    | Tok::Num
            )
        })
}

/// Whether the stream (comments included) shows an injection; `broke_out`: it begins with
/// the rest of a string the input was placed in.
fn judge(all: &[Tok], broke_out: bool) -> bool {
    let toks: Vec<Tok> = all
        .iter()
        .copied()
        .filter(|t| !matches!(t, Tok::Kw(Kw::Not)))
        .collect();
    let code: Vec<Tok> = toks
        .iter()
        .copied()
        .filter(|t| *t != Tok::Comment)
        .collect();
    let at = |v: &[Tok], i: usize| v.get(i).copied();
    // Anywhere: UNION [ALL|DISTINCT] [(] SELECT, a stacked statement, a subquery.
    for (i, t) in code.iter().enumerate() {
        match t {
            Tok::Kw(Kw::Union) => {
                let mut j = i + 1;
                while matches!(at(&code, j), Some(Tok::Kw(Kw::AllDistinct) | Tok::LParen)) {
                    j += 1;
                }
                if at(&code, j) == Some(Tok::Kw(Kw::Select)) {
                    return true;
                }
            }
            Tok::Semi if stacked(toks.get(all_index(&toks, i)..).unwrap_or(&[])) => return true,
            Tok::LParen if at(&code, i + 1) == Some(Tok::Kw(Kw::Select)) => {
                let window = code.get(i + 2..).unwrap_or(&[]);
                if window
                    .iter()
                    .take(8)
                    .any(|t| matches!(t, Tok::Kw(Kw::From) | Tok::RParen | Tok::Func { .. }))
                {
                    return true;
                }
            }
            Tok::Func { dangerous: true } => {
                let before = i.checked_sub(1).and_then(|p| at(&code, p));
                let sqlish = matches!(
                    before,
                    Some(
                        Tok::Logic
                            | Tok::Cmp
                            | Tok::Op
                            | Tok::Comma
                            | Tok::LParen
                            | Tok::Semi
                            | Tok::Kw(Kw::Select | Kw::Union | Kw::Clause)
                    )
                );
                if sqlish && (broke_out || i > 1 || before != Some(Tok::LParen)) {
                    return true;
                }
            }
            _ => {}
        }
    }
    // The head: the value a query expected, then what the input added to it.
    let first = match at(&toks, 0) {
        Some(Tok::Op) => 1, // unary minus/plus
        _ => 0,
    };
    let Some(head) = at(&toks, first) else {
        return false;
    };
    if broke_out && !matches!(head, Tok::Str { closed: true }) {
        return false;
    }
    if !broke_out && !matches!(head, Tok::Num) {
        return false;
    }
    let mut i = first + 1;
    while at(&toks, i) == Some(Tok::RParen) {
        i += 1;
    }
    let closed_parens = i > first + 1;
    match at(&toks, i) {
        // `admin'--`, `admin')#`
        Some(Tok::Comment) => broke_out || closed_parens,
        Some(Tok::Logic) => {
            let rest: Vec<Tok> = toks.get(i + 1..).unwrap_or(&[]).to_vec();
            let rest: Vec<Tok> = rest.into_iter().filter(|t| *t != Tok::LParen).collect();
            match rest.first() {
                Some(Tok::Func { .. }) | Some(Tok::Kw(Kw::Select)) => true,
                Some(v) if v.is_value() => match rest.get(1) {
                    Some(Tok::Cmp) => true,
                    Some(Tok::Comment) => true,
                    None => {
                        broke_out
                            && matches!(
                                v,
                                Tok::Str { closed: false } | Tok::Num | Tok::Kw(Kw::Literal)
                            )
                    }
                    Some(Tok::Op) => {
                        rest.get(2).is_some_and(|t| t.is_value()) && rest.get(3) == Some(&Tok::Cmp)
                    }
                    _ => false,
                },
                _ => false,
            }
        }
        Some(Tok::Kw(Kw::Clause | Kw::Union | Kw::Select | Kw::Waitfor)) => {
            broke_out || at(&toks, i + 1).is_some()
        }
        Some(Tok::Semi) => broke_out && matches!(at(&toks, i + 1), Some(Tok::Comment) | None),
        Some(Tok::Cmp) => {
            broke_out
                && at(&toks, i + 1).is_some_and(Tok::is_value)
                && matches!(at(&toks, i + 2), None | Some(Tok::Comment | Tok::Logic))
        }
        Some(Tok::Op) => {
            broke_out
                && matches!(at(&code, i + 1), Some(Tok::LParen))
                && matches!(at(&code, i + 2), Some(Tok::Kw(Kw::Select)))
        }
        _ => false,
    }
}

/// Whether the normalised value `input` is a SQL injection.
pub fn is_sqli(input: &str) -> bool {
    if input.len() < 2 {
        return false;
    }
    if judge(&tokenise(input, None), false) {
        return true;
    }
    for q in [b'\'', b'"'] {
        if input.as_bytes().contains(&q) && judge(&tokenise(input, Some(q)), true) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_sqli;

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn injections_are_found() {
        for s in [
            "1' or '1'='1",
            "' or ''='",
            "admin'--",
            "admin' #",
            "admin')--",
            "1 or 1=1",
            "1) or (1=1",
            "-1 union select 1,2,3",
            "1 union all select null,null--",
            "x' union/**/select password from users--",
            "/*!50000union*/ /*!50000select*/ 1,2",
            "1;drop table users",
            "\"; drop table users; --",
            "' and extractvalue(1,concat(0x7e,version()))--",
            "1 and sleep(5)",
            "' or sleep(5)#",
            "1' and 1=convert(int,@@version)--",
            "' having 1=1--",
            "' order by 3--",
            "1 order by 3",
            "x'='x",
            "'='",
            "' or 1--",
            "1' and (select count(*) from users)>0--",
            "'||(select 1 from dual)||'",
            "1 and 1=1",
            "' or true--",
            "1; waitfor delay '0:0:5'--",
            "') or ('a'='a",
        ] {
            assert!(is_sqli(s), "{s}");
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn prose_and_data_pass() {
        for s in [
            "o'brien",
            "don't stop me now",
            "rock 'n' roll or jazz",
            "select your size",
            "union station",
            "1 or 2",
            "a=1 and b=2",
            "tom & jerry",
            "5' 11\"",
            "it's #1 -- really",
            "what's up -- said he",
            "2024-01-01",
            "user(s) guide",
            "price: 10-20 (incl. tax)",
            "mcdonald's and wendy's",
            "the order was delayed",
            "i can't believe it's not butter",
            "1/2 cup sugar; 3 eggs",
            "hello world",
            "email@example.com",
            "select",
            "(555) 123-4567",
            "\"quoted\" text -- note",
        ] {
            assert!(!is_sqli(s), "{s}");
        }
    }
}
