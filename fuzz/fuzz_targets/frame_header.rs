//! Frame header decode never panics; whatever decodes re-encodes to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::frame::FrameHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, n))) = FrameHeader::parse(data) {
        assert!(n <= data.len());
        assert_eq!(header.encoded_len(), n);
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(&out[..], &data[..n], "{header:?}");
        // A strict prefix of a header is never a header.
        for cut in 0..n {
            assert_eq!(FrameHeader::parse(&data[..cut]), Ok(None));
        }
    }
});
