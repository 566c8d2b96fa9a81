//! The first bytes of a connection into the PROXY protocol parser (v1 and
//! v2), and through `read_header` as the listener reads them.
//!
//! Checks: no panic; a parsed header parses the same on its own; every
//! shorter prefix of it is "more bytes needed" (what byte-at-a-time reading
//! relies on); `read_header` agrees with `parse` and leaves exactly the
//! bytes after the header unread.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postroom_net::proxy::{parse, read_header};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Ok(Some((n, _))) = &parsed {
        // The spec's limit for v1 lines (2.1).
        assert!(!data.starts_with(b"PROXY ") || *n <= 107);
    }
    match &parsed {
        Ok(Some((n, header))) => {
            let n = *n;
            assert!(n <= data.len());
            match parse(&data[..n]) {
                Ok(Some((m, h))) => assert!(m == n && h == *header),
                other => panic!("the header alone gives {other:?}"),
            }
            for k in 0..n {
                assert_eq!(parse(&data[..k]), Ok(None), "prefix of {k} bytes");
            }
        }
        Ok(None) => {
            // Pending only while a header can still be complete.
            assert!(data.len() <= 536);
            for k in 0..data.len() {
                assert!(parse(&data[..k]).is_ok(), "prefix of {k} bytes refused");
            }
        }
        Err(_) => {}
    }
    let mut reader = data;
    let read = RUNTIME.with(|rt| rt.block_on(read_header(&mut reader)));
    match parsed {
        Ok(Some((n, header))) => {
            assert_eq!(read, Ok(header));
            assert_eq!(reader.len(), data.len() - n, "read_header read past the header");
        }
        _ => assert!(read.is_err()),
    }
});
