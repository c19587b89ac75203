//! Any bytes fed to the frame decoder give a message or an error, never a panic, and a
//! decoded message re-encodes to a frame that decodes to the same message.
#![no_main]

use crmsync::sync::{decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((message, used)) = decode_frame(data, 1 << 20) {
        assert!(used <= data.len());
        let frame = encode_frame(&message).expect("a decoded message encodes");
        let (again, _) = decode_frame(&frame, 1 << 20).expect("re-encoded frame decodes");
        assert_eq!(again, message);
    }
});
