//! Decoding arbitrary bytes as a tree `Directory` must never panic, and
//! whatever decodes must re-encode to exactly the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dir) = cairn_tree::decode_directory(data) {
        assert_eq!(cairn_tree::encode_directory(&dir), data);
        for f in &dir.files {
            let _ = cairn_tree::validate_name(&f.name);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<cairn_digest::DigestRef>();
    }
});
