//! Client behaviour against scripted servers: request bytes, body framings
//! under every read split, keep-alive, and hostile responses.

mod common;

use common::{Fake, Seg, Split, splits};
use embedded_io::{ErrorKind, Read};
use evehttp::{Client, Framing, HttpError, Limits, Method, Request, Version};

const HOST: &str = "ctrl.example:8080";

fn client(fake: Fake) -> Client<Fake> {
    Client::new(fake, HOST).unwrap()
}

/// Sends a GET and returns status and the whole body.
fn get_body(c: &mut Client<Fake>) -> Result<(u16, Vec<u8>), HttpError> {
    let mut resp = c.send(&Request::get("/"))?;
    let body = resp.body.read_to_vec(1 << 20)?;
    Ok((resp.status(), body))
}

/// The error a single GET answers with, for every split.
fn get_error(response: &[u8]) -> HttpError {
    let mut first = None;
    for split in splits() {
        let err = get_body(&mut client(Fake::bytes(response, split))).unwrap_err();
        assert_eq!(
            *first.get_or_insert(err),
            err,
            "same error under every split"
        );
    }
    first.unwrap()
}

#[test]
fn get_round_trip_exact_request_bytes() {
    for split in splits() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Multi: a\r\nx-multi: b\r\nContent-Length: 5\r\n\r\nhello";
        let mut c = client(Fake::bytes(resp, split));
        let mut r = c.send(&Request::get("/api/v2/edgedevice/ping")).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.head.reason(), "OK");
        assert_eq!(r.head.version(), Version::Http11);
        let h = r.head.headers();
        assert_eq!(h.len(), 4);
        assert_eq!(h.get_str("content-type"), Some("text/plain"));
        assert_eq!(h.get("CONTENT-TYPE"), Some(&b"text/plain"[..]));
        assert_eq!(h.get_all("X-MULTI").collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.iter().next(), Some(("Content-Type", &b"text/plain"[..])));
        assert_eq!(r.body.framing(), Framing::Length(5));
        assert!(!r.body.is_complete());
        assert_eq!(r.body.read_to_vec(5).unwrap(), b"hello");
        assert!(r.body.is_complete());
        assert!(c.is_reusable());
        assert_eq!(
            c.into_inner().written,
            b"GET /api/v2/edgedevice/ping HTTP/1.1\r\nHost: ctrl.example:8080\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}

#[test]
fn post_round_trip_exact_request_bytes() {
    let body = [0x0a, 0x03, 0x66, 0x6f, 0x6f, 0x00, 0xff];
    let mut fake = Fake::bytes(
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        Split::Max(1),
    );
    fake.write_max = 1;
    let mut c = client(fake);
    let req = Request::post("/api/v2/edgedevice/register", &body)
        .header("Content-Type", "application/x-proto-binary");
    let mut r = c.send(&req).unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.body.framing(), Framing::Length(0));
    assert!(r.body.is_complete());
    assert_eq!(r.body.read_to_vec(0).unwrap(), b"");
    let mut expected = b"POST /api/v2/edgedevice/register HTTP/1.1\r\nHost: ctrl.example:8080\r\n\
Content-Type: application/x-proto-binary\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n"
        .to_vec();
    expected.extend_from_slice(&body);
    assert_eq!(c.into_inner().written, expected);
}

#[test]
fn large_request_body_is_written_whole() {
    let body: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut fake = Fake::bytes(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Split::Max(64),
    );
    fake.write_max = 1000;
    let mut c = client(fake);
    drop(c.send(&Request::put("/img", &body)).unwrap());
    let written = c.into_inner().written;
    let head = b"PUT /img HTTP/1.1\r\nHost: ctrl.example:8080\r\nContent-Length: 100000\r\nConnection: keep-alive\r\n\r\n";
    assert_eq!(&written[..head.len()], head);
    assert_eq!(&written[head.len()..], &body[..]);
}

#[test]
fn methods_and_close_request() {
    let cases: [(Request<'_>, &[u8]); 4] = [
        (Request::delete("/x"), b"DELETE /x HTTP/1.1\r\n"),
        (Request::head("/x?a=b"), b"HEAD /x?a=b HTTP/1.1\r\n"),
        (Request::post("/x", b""), b"POST /x HTTP/1.1\r\n"),
        (
            Request::new(Method::Get, "/x").body(b"q"),
            b"GET /x HTTP/1.1\r\n",
        ),
    ];
    for (req, start) in cases {
        let mut out = Vec::new();
        req.encode_head("h", &mut out).unwrap();
        assert!(out.starts_with(start));
        let has_length = req.method() != Method::Delete && req.method() != Method::Head;
        assert_eq!(
            out.windows(16).any(|w| w == b"Content-Length: "),
            has_length
        );
    }
    let mut out = Vec::new();
    Request::get("/")
        .close()
        .encode_head("h", &mut out)
        .unwrap();
    assert_eq!(
        out,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(Method::Put.as_str(), "PUT");
}

#[test]
fn content_length_body_in_small_reads() {
    for split in splits() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz";
        let mut c = client(Fake::bytes(resp, split));
        let mut r = c.send(&Request::get("/")).unwrap();
        let mut got = Vec::new();
        let mut piece = [0u8; 3];
        loop {
            let n = r.body.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(r.body.read(&mut piece).unwrap(), 0);
    }
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\nA\r\n0123456789\r\na ; name=\"quoted\"\r\nabcdefghij\r\n1F\r\n\
0123456789abcdef0123456789ABCDE\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";

const CHUNKED_BODY: &[u8] = b"hello0123456789abcdefghij0123456789abcdef0123456789ABCDE";

#[test]
fn chunked_body_with_extensions_and_trailers() {
    for split in splits() {
        let next = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let mut c = client(Fake::responses(&[CHUNKED, next], split));
        let mut r = c.send(&Request::get("/")).unwrap();
        assert_eq!(r.body.framing(), Framing::Chunked);
        assert_eq!(r.body.read_to_vec(1000).unwrap(), CHUNKED_BODY);
        drop(r);
        assert!(c.is_reusable());
        assert_eq!(get_body(&mut c).unwrap(), (200, b"ok".to_vec()));
    }
}

#[test]
fn chunked_with_bare_lf_lines() {
    let resp = b"HTTP/1.1 200 OK\nTransfer-Encoding: Chunked\n\n3\nabc\n0\n\n";
    assert_eq!(
        get_body(&mut client(Fake::bytes(resp, Split::Max(1))))
            .unwrap()
            .1,
        b"abc"
    );
}

#[test]
fn keep_alive_reuses_one_transport_for_three_requests() {
    for split in splits() {
        let script = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"[..],
            CHUNKED,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nthree",
        ];
        let mut c = client(Fake::responses(&script, split));
        assert_eq!(get_body(&mut c).unwrap(), (200, b"one".to_vec()));
        assert_eq!(get_body(&mut c).unwrap(), (200, CHUNKED_BODY.to_vec()));
        assert_eq!(get_body(&mut c).unwrap(), (404, b"three".to_vec()));
        assert!(c.is_reusable());
        let written = c.into_inner().written;
        let one = b"GET / HTTP/1.1\r\nHost: ctrl.example:8080\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(written, one.repeat(3));
    }
}

#[test]
fn connection_close_requires_reconnect() {
    let resp = b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 2\r\n\r\nhi";
    let mut c = client(Fake::bytes(resp, Split::Max(1)));
    assert_eq!(get_body(&mut c).unwrap(), (200, b"hi".to_vec()));
    assert!(!c.is_reusable());
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::MustReconnect
    );
    let old = c.reconnect(Fake::bytes(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        Split::Max(1),
    ));
    assert_eq!(
        old.written.len(),
        67,
        "the refused request was never written"
    );
    assert_eq!(get_body(&mut c).unwrap(), (200, b"x".to_vec()));
    assert!(c.is_reusable());
}

#[test]
fn request_close_ends_reuse() {
    let mut c = client(Fake::bytes(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        Split::Max(3),
    ));
    let mut r = c.send(&Request::get("/").close()).unwrap();
    r.body.read_to_vec(1).unwrap();
    drop(r);
    assert!(!c.is_reusable());
}

#[test]
fn http10_keep_alive_rules() {
    let resp = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
    let mut c = client(Fake::bytes(resp, Split::Max(2)));
    get_body(&mut c).unwrap();
    assert!(!c.is_reusable());
    let resp = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx";
    let mut c = client(Fake::bytes(resp, Split::Max(2)));
    let mut r = c.send(&Request::get("/")).unwrap();
    assert_eq!(r.head.version(), Version::Http10);
    assert!(r.head.allows_keep_alive());
    r.body.read_to_vec(1).unwrap();
    drop(r);
    assert!(c.is_reusable());
}

#[test]
fn read_until_close() {
    for split in splits() {
        let resp = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nbody until the end";
        let mut c = client(Fake::bytes(resp, split));
        let mut r = c.send(&Request::get("/")).unwrap();
        assert_eq!(r.body.framing(), Framing::UntilClose);
        assert_eq!(r.body.read_to_vec(100).unwrap(), b"body until the end");
        drop(r);
        assert!(!c.is_reusable());
        assert_eq!(
            c.send(&Request::get("/")).unwrap_err(),
            HttpError::MustReconnect
        );
    }
}

#[test]
fn interim_responses_are_skipped() {
    for split in splits() {
        let resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nX: y\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut c = client(Fake::bytes(resp, split));
        assert_eq!(get_body(&mut c).unwrap(), (200, b"ok".to_vec()));
    }
    let many = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(9);
    assert_eq!(get_error(&many), HttpError::TooManyInterimResponses);
    let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
    assert_eq!(get_error(resp), HttpError::UnexpectedSwitchingProtocols);
}

#[test]
fn no_body_for_204_304_and_head() {
    for split in splits() {
        let script = [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
        ];
        let mut c = client(Fake::responses(&script, split));
        for (req, status) in [
            (Request::get("/"), 204),
            (Request::get("/"), 304),
            (Request::head("/"), 200),
            (Request::delete("/"), 204),
        ] {
            let mut r = c.send(&req).unwrap();
            assert_eq!(r.status(), status);
            assert_eq!(r.body.framing(), Framing::Empty);
            assert!(r.body.is_complete());
            assert_eq!(r.body.read(&mut [0u8; 8]).unwrap(), 0);
        }
        assert_eq!(get_body(&mut c).unwrap(), (200, b"last".to_vec()));
    }
}

#[test]
fn redirects_are_not_followed() {
    let resp = b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n";
    let mut c = client(Fake::bytes(resp, Split::Max(7)));
    let r = c.send(&Request::get("/api/v2/edgedevice/config")).unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.head.headers().get_str("location"),
        Some("http://elsewhere/")
    );
    drop(r);
    let written = c.into_inner().written;
    assert_eq!(written.windows(4).filter(|w| w == b"GET ").count(), 1);
}

#[test]
fn unread_bodies_are_drained_or_refused() {
    for split in splits() {
        let first = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"[..],
            &[b'z'; 1000],
        ]
        .concat();
        let script = [
            &first[..],
            CHUNKED,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ];
        let mut c = client(Fake::responses(&script, split));
        let mut r = c.send(&Request::get("/")).unwrap();
        r.body.read(&mut [0u8; 10]).unwrap();
        drop(r);
        drop(c.send(&Request::get("/")).unwrap());
        assert!(c.is_reusable());
        assert_eq!(get_body(&mut c).unwrap(), (200, b"ok".to_vec()));
    }
    let limits = Limits {
        max_drain_bytes: 999,
        ..Limits::default()
    };
    let script = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"[..],
        &[b'z'; 1000],
    ]
    .concat();
    let mut c = Client::with_limits(Fake::bytes(&script, Split::Max(100)), HOST, limits).unwrap();
    drop(c.send(&Request::get("/")).unwrap());
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::MustReconnect
    );
    assert!(!c.is_reusable());
}

#[test]
fn unsolicited_bytes_refuse_reuse() {
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n";
    let mut c = client(Fake::bytes(resp, Split::Max(4096)));
    get_body(&mut c).unwrap();
    assert!(!c.is_reusable());
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::MustReconnect
    );
}

#[test]
fn head_section_bounds() {
    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..20 {
        resp.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "p".repeat(1000)).as_bytes());
    }
    resp.extend_from_slice(b"\r\n");
    assert_eq!(get_error(&resp), HttpError::HeaderSectionTooLarge);

    let resp = format!("HTTP/1.1 200 OK\r\nX-Long: {}\r\n\r\n", "l".repeat(9000));
    assert_eq!(get_error(resp.as_bytes()), HttpError::LineTooLong);
    let resp = format!("HTTP/1.1 200 OK\r\nX-Long: {}", "l".repeat(100_000));
    assert_eq!(get_error(resp.as_bytes()), HttpError::LineTooLong);

    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..65 {
        resp.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    resp.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    assert_eq!(get_error(&resp), HttpError::TooManyHeaders);

    let limits = Limits {
        max_headers: 66,
        ..Limits::default()
    };
    let mut c = Client::with_limits(Fake::bytes(&resp, Split::Max(9)), HOST, limits).unwrap();
    assert_eq!(get_body(&mut c).unwrap().0, 200);
}

#[test]
fn malformed_heads() {
    for (resp, err) in [
        (
            &b"HTTP/1.1 2x0 OK\r\n\r\n"[..],
            HttpError::MalformedStatusLine,
        ),
        (b"HTTP/1.1200 OK\r\n\r\n", HttpError::MalformedStatusLine),
        (b"ICY 200 OK\r\n\r\n", HttpError::MalformedStatusLine),
        (
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            HttpError::MalformedStatusLine,
        ),
        (b"HTTP/2 200\r\n\r\n", HttpError::UnsupportedVersion),
        (
            b"HTTP/1.1 200 OK\rX: y\r\n\r\n",
            HttpError::MalformedStatusLine,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
            HttpError::MalformedHeader,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: y\r\n folded\r\n\r\n",
            HttpError::MalformedHeader,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            HttpError::MalformedHeader,
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            HttpError::MalformedHeader,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",
            HttpError::ConnectionClosed,
        ),
        (b"HTTP/1.1 20", HttpError::ConnectionClosed),
        (b"", HttpError::NoResponse),
    ] {
        assert_eq!(get_error(resp), err, "{}", String::from_utf8_lossy(resp));
    }
}

#[test]
fn hostile_framing() {
    for (resp, err) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"[..],
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nxx",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1,\r\n\r\nx",
            HttpError::BadContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            HttpError::ConflictingFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            HttpError::UnsupportedTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            HttpError::UnsupportedTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
            HttpError::UnsupportedTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            HttpError::BadChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
            HttpError::BadChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            HttpError::BadChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n",
            HttpError::BadChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            HttpError::MalformedChunk,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            HttpError::ConnectionClosed,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            HttpError::ConnectionClosed,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
            HttpError::ConnectionClosed,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
            HttpError::MalformedHeader,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            HttpError::ConnectionClosed,
        ),
    ] {
        assert_eq!(get_error(resp), err, "{}", String::from_utf8_lossy(resp));
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
        "e".repeat(2000)
    );
    assert_eq!(get_error(resp.as_bytes()), HttpError::ChunkLineTooLong);
    let resp = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}1\r\nx\r\n0\r\n\r\n",
        "0".repeat(5000)
    );
    assert_eq!(get_error(resp.as_bytes()), HttpError::ChunkLineTooLong);
    let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    for i in 0..100 {
        resp.extend_from_slice(format!("T{i}: {}\r\n", "t".repeat(50)).as_bytes());
    }
    resp.extend_from_slice(b"\r\n");
    assert_eq!(get_error(&resp), HttpError::TrailerTooLarge);

    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc";
    assert_eq!(
        get_body(&mut client(Fake::bytes(resp, Split::Max(1))))
            .unwrap()
            .1,
        b"abc"
    );
}

#[test]
fn conflicting_framing_breaks_the_connection() {
    let resp =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let mut c = client(Fake::bytes(resp, Split::Max(1)));
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::ConflictingFraming
    );
    assert!(!c.is_reusable());
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::MustReconnect
    );
}

#[test]
fn body_limits() {
    let exact = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd";
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n";
    let until_close = b"HTTP/1.1 200 OK\r\n\r\nabcd";
    for resp in [&exact[..], chunked, until_close] {
        for split in splits() {
            // Limit from the request.
            let mut c = client(Fake::bytes(resp, split));
            let mut r = c.send(&Request::get("/").body_limit(4)).unwrap();
            assert_eq!(r.body.read_to_vec(100).unwrap(), b"abcd");
            drop(r);
            let mut c = client(Fake::bytes(resp, split));
            let mut r = c.send(&Request::get("/").body_limit(3)).unwrap();
            assert_eq!(
                r.body.read_to_vec(100).unwrap_err(),
                HttpError::BodyTooLarge
            );
            let mut b = [0u8; 1];
            assert_eq!(
                r.body.read(&mut b).unwrap_err(),
                HttpError::BodyTooLarge,
                "stays broken"
            );
            drop(r);
            assert!(!c.is_reusable());
            // Limit given to read_to_vec.
            let mut c = client(Fake::bytes(resp, split));
            let mut r = c.send(&Request::get("/")).unwrap();
            assert_eq!(r.body.read_to_vec(3).unwrap_err(), HttpError::BodyTooLarge);
            // Limit from the client's defaults.
            let limits = Limits {
                body_limit: 3,
                ..Limits::default()
            };
            let mut c = Client::with_limits(Fake::bytes(resp, split), HOST, limits).unwrap();
            let mut r = c.send(&Request::get("/")).unwrap();
            assert_eq!(
                r.body.read_to_vec(100).unwrap_err(),
                HttpError::BodyTooLarge
            );
        }
    }
}

#[test]
fn injection_is_refused_before_writing() {
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let mut c = client(Fake::bytes(resp, Split::Max(1)));
    for path in [
        "",
        "x",
        "/a b",
        "/a\r\nX: y",
        "/a\n",
        "/\u{e9}",
        "/a\tb",
        "/\x7f",
    ] {
        assert_eq!(
            c.send(&Request::get(path)).unwrap_err(),
            HttpError::InvalidPath,
            "{path:?}"
        );
    }
    for (name, value) in [
        ("X-A", "v\r\nInjected: 1"),
        ("X-A", "v\n"),
        ("X-A", "v\r"),
        ("X-A", "\0"),
        ("X A", "v"),
        ("X:A", "v"),
        ("X-A\r\nY", "v"),
        ("", "v"),
        ("Content-Length", "5"),
        ("transfer-encoding", "chunked"),
        ("HOST", "evil"),
        ("Connection", "close"),
    ] {
        let req = Request::get("/").header(name, value);
        assert_eq!(
            c.send(&req).unwrap_err(),
            HttpError::InvalidRequestHeader,
            "{name:?}: {value:?}"
        );
    }
    for host in ["", "a b", "a\r\nX: y", "a/b", "user@host", "h\u{e9}"] {
        let err = Client::new(Fake::bytes(b"", Split::Max(1)), host).unwrap_err();
        assert_eq!(err, HttpError::InvalidRequestHeader, "{host:?}");
    }
    assert!(c.is_reusable());
    assert_eq!(c.transport_mut().written, b"");
    let req = Request::get("/ok")
        .header("X-Utf8", "caf\u{e9}")
        .header("X-Tab", "a\tb");
    assert_eq!(c.send(&req).unwrap().status(), 200);
}

#[test]
fn transport_errors_keep_their_kind() {
    let fake = Fake::new(
        vec![
            Seg::Bytes(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Seg::Error(ErrorKind::TimedOut),
        ],
        Split::Max(1),
    );
    let mut c = client(fake);
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::Read(ErrorKind::TimedOut)
    );
    assert_eq!(
        c.send(&Request::get("/")).unwrap_err(),
        HttpError::MustReconnect
    );

    let fake = Fake::new(
        vec![
            Seg::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc".to_vec()),
            Seg::Error(ErrorKind::ConnectionReset),
        ],
        Split::Max(100),
    );
    let mut c = client(fake);
    let mut r = c.send(&Request::get("/")).unwrap();
    assert_eq!(
        r.body.read_to_vec(9).unwrap_err(),
        HttpError::Read(ErrorKind::ConnectionReset)
    );

    let mut fake = Fake::bytes(b"", Split::Max(1));
    fake.write_error = Some(ErrorKind::BrokenPipe);
    let err = client(fake).send(&Request::get("/")).unwrap_err();
    assert_eq!(err, HttpError::Write(ErrorKind::BrokenPipe));

    let mut fake = Fake::bytes(b"", Split::Max(1));
    fake.write_zero = true;
    let err = client(fake)
        .send(&Request::post("/", &[1; 10_000]))
        .unwrap_err();
    assert_eq!(err, HttpError::Write(ErrorKind::WriteZero));
    assert_eq!(embedded_io::Error::kind(&err), ErrorKind::WriteZero);
}

#[test]
fn errors_display_and_are_errors() {
    let all = [
        HttpError::Read(ErrorKind::TimedOut),
        HttpError::Write(ErrorKind::Other),
        HttpError::NoResponse,
        HttpError::ConnectionClosed,
        HttpError::MustReconnect,
        HttpError::MalformedStatusLine,
        HttpError::UnsupportedVersion,
        HttpError::MalformedHeader,
        HttpError::LineTooLong,
        HttpError::HeaderSectionTooLarge,
        HttpError::TooManyHeaders,
        HttpError::TooManyInterimResponses,
        HttpError::UnexpectedSwitchingProtocols,
        HttpError::BadContentLength,
        HttpError::ConflictingFraming,
        HttpError::UnsupportedTransferEncoding,
        HttpError::BadChunkSize,
        HttpError::ChunkLineTooLong,
        HttpError::MalformedChunk,
        HttpError::TrailerTooLarge,
        HttpError::BodyTooLarge,
        HttpError::InvalidPath,
        HttpError::InvalidRequestHeader,
    ];
    let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        texts.len(),
        all.len(),
        "every variant says something different"
    );
    let err: &dyn core::error::Error = &HttpError::BadChunkSize;
    assert_eq!(err.to_string(), "invalid chunk-size line");
    assert_eq!(
        HttpError::from_read(ErrorKind::TimedOut),
        HttpError::Read(ErrorKind::TimedOut)
    );
    assert_eq!(
        HttpError::from_write(ErrorKind::Other),
        HttpError::Write(ErrorKind::Other)
    );
}
