//! The detection rules, written for weft and numbered like the OWASP Core Rule Set's
//! categories (913 scanners, 920 protocol, 930/931 traversal and file inclusion, 932/933/944
//! command and code execution, 941 XSS, 942 SQL injection). Each has a paranoia level, a
//! severity score (critical 5, error 4, warning 3, notice 2) and what it looks at.

use super::request::Location;
pub use super::view::View;
use super::view::{any_of, needles, possible, ByteSet};
use super::{sqli, xss};

/// The rule categories, as stats and the corpus name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Protocol,
    Lfi,
    Rce,
    Xss,
    Sqli,
    Scanner,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Protocol,
        Category::Lfi,
        Category::Rce,
        Category::Xss,
        Category::Sqli,
        Category::Scanner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Protocol => "protocol",
            Category::Lfi => "lfi",
            Category::Rce => "rce",
            Category::Xss => "xss",
            Category::Sqli => "sqli",
            Category::Scanner => "scanner",
        }
    }
}

/// Which targets a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Argument values and names, cookies.
    Args,
    /// Args and the path.
    ArgsPath,
    /// Args, User-Agent and Referer (what SQLi/XSS rules read).
    ArgsUaReferer,
    /// Args and every header value.
    ArgsHeaders,
    Path,
    UserAgent,
}

impl Scope {
    fn covers(self, v: &View<'_>) -> bool {
        let arg = matches!(
            v.location,
            Location::Arg | Location::ArgName | Location::Cookie
        );
        match self {
            Scope::Args => arg,
            Scope::ArgsPath => arg || v.location == Location::Path,
            Scope::ArgsUaReferer => {
                arg || v.name == "header:user-agent" || v.name == "header:referer"
            }
            Scope::ArgsHeaders => arg || v.location == Location::Header,
            Scope::Path => v.location == Location::Path,
            Scope::UserAgent => v.name == "header:user-agent",
        }
    }
}

type Detect = fn(&View<'_>) -> bool;

/// One rule.
pub struct Rule {
    pub id: u32,
    pub category: Category,
    pub paranoia: u8,
    pub score: u32,
    pub msg: &'static str,
    /// What it inspects, and how; `None`: a rule of the whole request (the engine runs it).
    pub check: Option<(Scope, Detect)>,
}

pub const INVALID_PERCENT: u32 = 920220;
pub const BODY_ON_GET: u32 = 920170;
pub const NO_USER_AGENT: u32 = 920320;
pub const BODY_PARSE: u32 = 920130;
pub const SCANNER_HEADER: u32 = 913110;

const fn rule(
    id: u32,
    category: Category,
    paranoia: u8,
    score: u32,
    msg: &'static str,
    check: Option<(Scope, Detect)>,
) -> Rule {
    Rule {
        id,
        category,
        paranoia,
        score,
        msg,
        check,
    }
}

use Category::*;
use Scope::*;

/// Every rule.
pub const RULES: &[Rule] = &[
    rule(
        INVALID_PERCENT,
        Protocol,
        1,
        3,
        "invalid percent-encoding",
        None,
    ),
    rule(
        BODY_ON_GET,
        Protocol,
        1,
        3,
        "GET or HEAD request with a body",
        None,
    ),
    rule(NO_USER_AGENT, Protocol, 2, 2, "no User-Agent", None),
    rule(
        BODY_PARSE,
        Protocol,
        1,
        5,
        "body does not parse as its Content-Type",
        None,
    ),
    rule(
        SCANNER_HEADER,
        Scanner,
        1,
        5,
        "security scanner header",
        None,
    ),
    rule(
        920270,
        Protocol,
        1,
        5,
        "control character in a value",
        Some((ArgsPath, control_chars)),
    ),
    rule(
        920260,
        Protocol,
        1,
        5,
        "overlong or full-width encoding evasion",
        Some((ArgsPath, overlong)),
    ),
    rule(
        920440,
        Protocol,
        1,
        5,
        "restricted file extension",
        Some((Path, restricted_extension)),
    ),
    rule(
        930100,
        Lfi,
        1,
        5,
        "encoded path traversal",
        Some((ArgsPath, encoded_traversal)),
    ),
    rule(
        930110,
        Lfi,
        1,
        5,
        "path traversal",
        Some((ArgsPath, traversal)),
    ),
    rule(
        930120,
        Lfi,
        1,
        5,
        "operating system file access",
        Some((ArgsPath, os_file)),
    ),
    rule(
        930130,
        Lfi,
        1,
        5,
        "restricted file access",
        Some((Path, restricted_file)),
    ),
    rule(
        931100,
        Lfi,
        1,
        5,
        "remote file inclusion: URL with an IP address",
        Some((Args, url_with_ip)),
    ),
    rule(
        931110,
        Lfi,
        1,
        5,
        "file inclusion: stream wrapper",
        Some((Args, stream_wrapper)),
    ),
    rule(
        931130,
        Lfi,
        2,
        5,
        "remote file inclusion: off-domain URL ending in ?",
        Some((Args, url_trailing_question)),
    ),
    rule(
        932100,
        Rce,
        1,
        5,
        "shell command injection",
        Some((Args, command_injection)),
    ),
    rule(
        932160,
        Rce,
        1,
        5,
        "shell or interpreter path",
        Some((Args, shell_path)),
    ),
    rule(
        932170,
        Rce,
        1,
        5,
        "shellshock function definition",
        Some((ArgsHeaders, shellshock)),
    ),
    rule(933100, Rce, 1, 5, "PHP open tag", Some((Args, php_tag))),
    rule(
        933160,
        Rce,
        1,
        5,
        "PHP code execution function",
        Some((Args, php_function)),
    ),
    rule(
        944150,
        Rce,
        1,
        5,
        "Log4Shell JNDI lookup",
        Some((ArgsHeaders, jndi)),
    ),
    rule(
        941100,
        Xss,
        1,
        5,
        "XSS: script-capable markup (HTML tokeniser)",
        Some((ArgsUaReferer, xss_markup)),
    ),
    rule(
        941120,
        Xss,
        2,
        5,
        "XSS: any on* event attribute",
        Some((ArgsUaReferer, xss_markup_strict)),
    ),
    rule(941180, Xss, 1, 5, "XSS: DOM sink", Some((Args, dom_sink))),
    rule(
        941190,
        Xss,
        2,
        5,
        "XSS: dialog or eval call",
        Some((Args, js_call)),
    ),
    rule(
        941310,
        Xss,
        2,
        3,
        "HTML tag in a value",
        Some((Args, any_tag)),
    ),
    rule(
        942100,
        Sqli,
        1,
        5,
        "SQL injection (SQL tokeniser)",
        Some((ArgsUaReferer, sqli_tokens)),
    ),
    rule(
        942150,
        Sqli,
        1,
        5,
        "SQL information disclosure",
        Some((Args, sql_disclosure)),
    ),
    rule(
        942160,
        Sqli,
        1,
        5,
        "time-based SQL injection",
        Some((Args, sql_time)),
    ),
    rule(
        942200,
        Sqli,
        2,
        3,
        "SQL comment after a quote",
        Some((Args, sql_quote_comment)),
    ),
    rule(
        942430,
        Sqli,
        2,
        3,
        "many SQL special characters",
        Some((Args, sql_special_chars)),
    ),
    rule(
        913100,
        Scanner,
        1,
        5,
        "security scanner User-Agent",
        Some((UserAgent, scanner_agent)),
    ),
    rule(
        913120,
        Scanner,
        1,
        5,
        "security scanner probe path",
        Some((Path, scanner_path)),
    ),
];

/// The rule `id`.
pub fn find(id: u32) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

impl Rule {
    /// Whether the rule matches target `v` (a target rule in scope).
    pub fn matches(&self, v: &View<'_>) -> bool {
        self.check
            .is_some_and(|(scope, detect)| scope.covers(v) && detect(v))
    }
}

/// Every needle of the rules that read the raw text holds a `%`.
fn raw_any_of(raw: &str, needles: &[super::view::Needle]) -> bool {
    raw.contains('%') && {
        let lower = raw.to_ascii_lowercase();
        any_of(&lower, ByteSet::of(&lower), needles)
    }
}

fn control_chars(v: &View<'_>) -> bool {
    v.url
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn overlong(v: &View<'_>) -> bool {
    overlong_raw(v.raw) || v.norm.contains('\u{fffd}') && v.norm.contains("..")
}

/// Overlong UTF-8 and full-width/IIS escapes of `.` and `/` in text as sent.
pub fn overlong_raw(raw: &str) -> bool {
    raw_any_of(
        raw,
        needles![
            "%c0%", "%c1%", "%e0%80", "%f0%80", "%uff0e", "%uff0f", "%u2215", "%u2216", "%u002e",
        ],
    )
}

fn restricted_extension(v: &View<'_>) -> bool {
    let path = v.norm.split('?').next().unwrap_or("");
    let file = path.rsplit('/').next().unwrap_or("");
    [
        ".bak",
        ".backup",
        ".old",
        ".orig",
        ".sql",
        ".swp",
        ".swo",
        ".tmp",
        ".ini",
        ".db",
        ".sqlite",
        ".mdb",
        ".key",
        ".pem",
        ".htpasswd",
        ".htaccess",
        ".cfg",
        ".dist",
    ]
    .iter()
    .any(|ext| file.ends_with(ext))
        || file.ends_with('~')
}

fn encoded_traversal(v: &View<'_>) -> bool {
    raw_any_of(
        v.raw,
        needles![
            "%2e%2e",
            "%252e",
            "..%2f",
            "..%5c",
            "%2e./",
            ".%2e/",
            "%2e.\\",
            "..%255c",
            "..%252f",
            "%2e%2e%2f",
            "..%c0%af",
            "..%c1%9c",
        ],
    )
}

fn traversal(v: &View<'_>) -> bool {
    let n = v.norm;
    // Every shape below holds `..`.
    if !n.contains("..") {
        return false;
    }
    n.contains("../") || n.contains("..\\") || n.ends_with("/..") || n == ".." || n.contains("..;/")
}

fn os_file(v: &View<'_>) -> bool {
    const FILES: &[super::view::Needle] = needles![
        "etc/passwd",
        "etc/shadow",
        "etc/group",
        "etc/hosts",
        "etc/issue",
        "etc/crontab",
        "proc/self/",
        "proc/version",
        "win.ini",
        "boot.ini",
        "system32/",
        "windows/system.ini",
        ".htpasswd",
        "web.config",
        "id_rsa",
        ".bash_history",
        ".ssh/",
        "wp-config.php",
        "var/log/",
        "etc/nginx/",
        "etc/apache2/",
        "/.env",
        "c:/windows",
    ];
    if v.present.has(b'\\') {
        let n = v.norm.replace('\\', "/");
        any_of(&n, v.present.with(b'/'), FILES)
    } else {
        any_of(v.norm, v.present, FILES)
    }
}

fn restricted_file(v: &View<'_>) -> bool {
    let path = v.norm.split('?').next().unwrap_or("");
    any_of(
        path,
        v.present,
        needles![
            "/.git",
            "/.svn",
            "/.hg",
            "/.env",
            "/.aws",
            "/.ssh",
            "/.ds_store",
            "/.htaccess",
            "/.htpasswd",
            "/web.config",
            "/wp-config",
            "/.bash_history",
            "/.npmrc",
            "/.docker",
            "/server-status",
            "/phpinfo.php",
        ],
    )
}

fn url_start(n: &str) -> Option<&str> {
    ["http://", "https://", "ftp://", "ftps://"]
        .iter()
        .find_map(|p| n.trim_start().strip_prefix(p))
}

fn url_with_ip(v: &View<'_>) -> bool {
    url_start(v.norm).is_some_and(|rest| {
        let host = rest.split(['/', ':', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        let parts: Vec<&str> = host.split('.').collect();
        parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn stream_wrapper(v: &View<'_>) -> bool {
    any_of(
        v.norm,
        v.present,
        needles![
            "php://",
            "file://",
            "expect://",
            "data://",
            "zip://",
            "phar://",
            "glob://",
            "gopher://",
            "dict://",
            "jar:file",
            "compress.zlib://",
            "ogg://",
            "ssh2.",
        ],
    )
}

fn url_trailing_question(v: &View<'_>) -> bool {
    url_start(v.norm).is_some() && v.norm.trim_end().ends_with('?')
}

/// Commands that are unmistakable wherever they appear in command position.
fn strong_command(word: &str) -> bool {
    matches!(
        word,
        "whoami"
            | "uname"
            | "wget"
            | "curl"
            | "nc"
            | "ncat"
            | "netcat"
            | "bash"
            | "zsh"
            | "ksh"
            | "python"
            | "python3"
            | "perl"
            | "ruby"
            | "php"
            | "nslookup"
            | "chmod"
            | "chown"
            | "mkfifo"
            | "telnet"
            | "socat"
            | "busybox"
            | "ifconfig"
            | "powershell"
            | "pwsh"
            | "certutil"
            | "bitsadmin"
            | "ipconfig"
            | "systeminfo"
            | "tasklist"
            | "wmic"
            | "mshta"
            | "rundll32"
            | "regsvr32"
            | "cscript"
            | "wscript"
            | "cmd"
            | "cmd.exe"
            | "passwd"
            | "crontab"
            | "nohup"
            | "sudo"
            | "base64"
            | "xxd"
            | "printenv"
            | "useradd"
            | "net.exe"
            | "ping"
            | "dig"
            | "tftp"
            | "scp"
            | "ssh"
            | "sh"
            | "dash"
            | "rm"
            | "id"
    )
}

/// Commands that are also English words: they count only with a shell-like argument.
fn word_command(word: &str) -> bool {
    matches!(
        word,
        "cat"
            | "ls"
            | "echo"
            | "head"
            | "tail"
            | "more"
            | "less"
            | "find"
            | "sleep"
            | "kill"
            | "touch"
            | "type"
            | "dir"
            | "env"
            | "set"
            | "net"
            | "del"
            | "copy"
            | "awk"
            | "sed"
            | "grep"
            | "tac"
            | "nl"
            | "od"
            | "ps"
            | "pwd"
            | "who"
            | "uptime"
            | "reg"
            | "start"
    )
}

/// Whether `arg` (what follows a command) looks like a shell argument.
fn shell_arg(arg: &str) -> bool {
    let arg = arg.trim_start();
    arg.starts_with([
        '/', '-', '.', '~', '$', '%', '>', '<', '|', ';', '&', '`', '\\',
    ]) || arg.starts_with("c:")
}

/// A command after a separator (`;`, `|`, `&`, a newline, `$(`, a backtick) or at the start
/// of the value: strong commands always, word commands with a shell-like argument (or,
/// after a separator, alone at the end). At most 64 separators are looked behind.
fn command_injection(v: &View<'_>) -> bool {
    let s = v.shell();
    let b = s.as_bytes();
    if command_at(s, 0, false) {
        return true;
    }
    let mut separators = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let sep = match c {
            b';' | b'|' | b'&' | b'\n' | b'`' => 1,
            b'$' if b.get(i + 1) == Some(&b'(') => 2,
            _ => 0,
        };
        if sep > 0 {
            let mut j = i + sep;
            while matches!(b.get(j), Some(b'|' | b'&' | b' ' | b'(' | b'{')) {
                j += 1;
            }
            if command_at(s, j, true) {
                return true;
            }
            separators += 1;
            if separators == 64 {
                return false;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}

/// Whether a command starts at byte `at` of `s` (see [`command_injection`]).
fn command_at(s: &str, at: usize, after_sep: bool) -> bool {
    let mut rest = s.get(at..).unwrap_or("");
    // Leading binary directories, each as many times as it repeats, in this order.
    for dir in ["/usr/local/bin/", "/usr/bin/", "/bin/", "/sbin/"] {
        while let Some(after) = rest.strip_prefix(dir) {
            rest = after;
        }
    }
    let word_len = rest
        .bytes()
        .position(|c| !(c.is_ascii_alphanumeric() || c == b'.' || c == b'_'))
        .unwrap_or(rest.len());
    // Every command is 2 to 10 bytes: a longer (or empty) word is none.
    if !(2..=10).contains(&word_len) {
        return false;
    }
    let word = rest.get(..word_len).unwrap_or("");
    let arg = rest.get(word_len..).unwrap_or("");
    let end = || arg.trim().is_empty() || arg.trim_start().starts_with([';', '|', '&', '`', ')']);
    if strong_command(word) {
        // At the start of a value a command word needs a shell-like argument (`id`,
        // `python` and `ping` are also plain values), or a URL to fetch.
        // After a separator: alone, with a shell-like argument, or (a longer name than
        // the `id` that `I'd` folds into) with any argument.
        (after_sep && (word.len() >= 4 || end()))
            || shell_arg(arg)
            || (arg.starts_with(' ')
                && ["http", "ftp"]
                    .iter()
                    .any(|p| arg.trim_start().starts_with(p)))
    } else if word_command(word) {
        shell_arg(arg) || (after_sep && end())
    } else {
        false
    }
}

fn shell_path(v: &View<'_>) -> bool {
    // The shell view is `norm` with characters removed and spaces added.
    const PATHS: &[super::view::Needle] = needles![
        "/bin/sh",
        "/bin/bash",
        "/bin/zsh",
        "/bin/nc",
        "/bin/busybox",
        "/usr/bin/env",
        "/usr/bin/python",
        "/usr/bin/perl",
        "/usr/bin/wget",
        "/usr/bin/curl",
        "/dev/tcp/",
        "/dev/udp/",
        "cmd.exe",
        "powershell.exe",
        "cmd /c",
        "cmd/c",
        "bash -i",
        "bash -c",
        "sh -c",
        "nc -e",
        "/usr/bin/id",
    ];
    let present = v.present.with(b' ');
    possible(present, PATHS) && any_of(v.shell(), present, PATHS)
}

fn shellshock(v: &View<'_>) -> bool {
    if !(v.url.contains('{') && v.url.contains('}')) {
        return false;
    }
    let s = v.url.replace(char::is_whitespace, "");
    s.contains("(){") && s.contains("};")
}

fn php_tag(v: &View<'_>) -> bool {
    any_of(v.norm, v.present, needles!["<?php", "<?=", "[php]", "<? "])
}

fn php_function(v: &View<'_>) -> bool {
    const FUNCTIONS: &[super::view::Needle] = needles![
        "system(",
        "passthru(",
        "shell_exec(",
        "exec(",
        "popen(",
        "proc_open(",
        "pcntl_exec(",
        "assert(",
        "base64_decode(",
        "phpinfo(",
        "file_get_contents(",
        "file_put_contents(",
        "fopen(",
        "readfile(",
        "include(",
        "require(",
        "include_once(",
        "require_once(",
        "create_function(",
        "call_user_func(",
        "preg_replace(",
        "str_rot13(",
        "gzinflate(",
    ];
    // Spaces and tabs removed: only bytes of `norm` remain.
    possible(v.present, FUNCTIONS) && any_of(&v.norm.replace([' ', '\t'], ""), v.present, FUNCTIONS)
}

fn jndi(v: &View<'_>) -> bool {
    if !(v.present.has(b'$') && v.present.has(b'{')) {
        return false;
    }
    let s = v.squeezed();
    s.contains("${jndi:")
        || (s.contains("${")
            && any_of(
                s,
                v.present,
                needles!["${lower:", "${upper:", "${::-", "${env:", "${sys:", "${${", "${date:",],
            ))
}

fn xss_markup(v: &View<'_>) -> bool {
    xss::is_xss(v.norm, false)
}

fn xss_markup_strict(v: &View<'_>) -> bool {
    xss::is_xss(v.norm, true)
}

fn dom_sink(v: &View<'_>) -> bool {
    v.squeezed_any_of(needles![
        "document.cookie",
        "document.write(",
        "document.domain",
        "window.location=",
        "document.location=",
        ".innerhtml=",
        "string.fromcharcode(",
        "top.location=",
        "window.open(",
        "atob(",
        "constructor.constructor(",
        "import(\"data:",
    ])
}

fn js_call(v: &View<'_>) -> bool {
    v.squeezed_any_of(needles![
        "alert(",
        "prompt(",
        "confirm(",
        "eval(",
        "alert`",
        "settimeout(",
        "setinterval(",
    ])
}

fn any_tag(v: &View<'_>) -> bool {
    let b = v.norm.as_bytes();
    b.windows(2).any(|w| {
        w.first() == Some(&b'<')
            && w.get(1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/' || *c == b'!')
    })
}

fn sqli_tokens(v: &View<'_>) -> bool {
    sqli::is_sqli(v.norm)
}

fn sql_disclosure(v: &View<'_>) -> bool {
    // Whitespace becomes a space: `norm`'s bytes and a space.
    const TABLES: &[super::view::Needle] = needles![
        "@@version",
        "information_schema",
        "sqlite_master",
        "pg_catalog",
        "sysobjects",
        "syscolumns",
        "load_file(",
        "into outfile",
        "into dumpfile",
        "xp_cmdshell",
        "mysql.user",
        "pg_shadow",
        "all_tables",
        "user_tables",
        "sys.tables",
    ];
    let present = v.present.with(b' ');
    possible(present, TABLES) && any_of(&v.norm.replace(char::is_whitespace, " "), present, TABLES)
}

fn sql_time(v: &View<'_>) -> bool {
    v.squeezed_any_of(needles![
        "sleep(",
        "benchmark(",
        "pg_sleep(",
        "waitfordelay'",
        "waitfordelay\"",
        "dbms_lock.sleep(",
        "randomblob(",
        "dbms_pipe.receive_message(",
    ])
}

fn sql_quote_comment(v: &View<'_>) -> bool {
    v.squeezed_any_of(needles![
        "'--", "'#", "'/*", "/*!", "\"--", "';", "\";", "')--"
    ])
}

fn sql_special_chars(v: &View<'_>) -> bool {
    v.norm
        .chars()
        .filter(|c| "~!@#$%^&*()-+={}[]|:;\"'`<>".contains(*c))
        .count()
        >= 12
}

const SCANNERS: &[super::view::Needle] = needles![
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "dirbuster",
    "gobuster",
    "wpscan",
    "acunetix",
    "nessus",
    "openvas",
    "zgrab",
    "nuclei",
    "w3af",
    "arachni",
    "havij",
    "jaeles",
    "ffuf",
    "feroxbuster",
    "wfuzz",
    "fuzz faster u fool",
    "netsparker",
    "appscan",
    "webinspect",
    "skipfish",
    "paros",
    "commix",
    "fimap",
    "xsstrike",
    "whatweb",
    "wapiti",
    "joomscan",
    "zmeu",
    "morfeus",
    "bsqlbf",
    "dirb/",
    "httprint",
    "webshag",
    "burpcollaborator",
    "qualys",
    "openwebspider",
    "grendel-scan",
    "brutus",
    "hydra",
];

fn scanner_agent(v: &View<'_>) -> bool {
    any_of(v.norm, v.present, SCANNERS)
}

/// Headers only scanners send.
pub const SCANNER_HEADERS: &[&str] = &[
    "acunetix-product",
    "acunetix-scanning-agreement",
    "acunetix-user-agreement",
    "x-scan-memo",
    "x-wipp",
    "x-ratproxy-loop",
    "x-request-memo",
    "x-scanner",
];

fn scanner_path(v: &View<'_>) -> bool {
    any_of(
        v.norm,
        v.present,
        needles![
            "/nessustest",
            "/acunetix-wvs-test",
            "/w00tw00t",
            "/nikto-test",
            "/sqlmap",
            "/testcgi.exe",
            "/.well-known/nuclei",
            "/muieblackcat",
            "/hndunit",
        ],
    )
}
