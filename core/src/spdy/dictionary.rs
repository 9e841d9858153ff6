//! The SPDY/3 zlib dictionary.
//!
//! SPDY/3 header blocks are compressed with zlib primed with a fixed preset
//! dictionary of 1423 bytes (SPDY/3.1 draft, section 2.6.10.1). Its zlib
//! DICTID (the Adler-32 of the bytes) is `0xE3C6A7C2`; every SPDY/3 peer —
//! moby/spdystream in kubectl and the kubelet included — uses exactly these
//! bytes. The first part is a list of common header names, each preceded by
//! its u32 length; the rest is raw text (status lines, dates, MIME types).
//!
//! Reproduced byte for byte from the SPDY/3 draft; the tests below pin its
//! length and checksum.

/// The SPDY/3 header-compression dictionary.
pub(crate) const SPDY3_DICTIONARY: &[u8; 1423] = b"\
    \x00\x00\x00\x07options\
    \x00\x00\x00\x04head\
    \x00\x00\x00\x04post\
    \x00\x00\x00\x03put\
    \x00\x00\x00\x06delete\
    \x00\x00\x00\x05trace\
    \x00\x00\x00\x06accept\
    \x00\x00\x00\x0eaccept-charset\
    \x00\x00\x00\x0faccept-encoding\
    \x00\x00\x00\x0faccept-language\
    \x00\x00\x00\x0daccept-ranges\
    \x00\x00\x00\x03age\
    \x00\x00\x00\x05allow\
    \x00\x00\x00\x0dauthorization\
    \x00\x00\x00\x0dcache-control\
    \x00\x00\x00\x0aconnection\
    \x00\x00\x00\x0ccontent-base\
    \x00\x00\x00\x10content-encoding\
    \x00\x00\x00\x10content-language\
    \x00\x00\x00\x0econtent-length\
    \x00\x00\x00\x10content-location\
    \x00\x00\x00\x0bcontent-md5\
    \x00\x00\x00\x0dcontent-range\
    \x00\x00\x00\x0ccontent-type\
    \x00\x00\x00\x04date\
    \x00\x00\x00\x04etag\
    \x00\x00\x00\x06expect\
    \x00\x00\x00\x07expires\
    \x00\x00\x00\x04from\
    \x00\x00\x00\x04host\
    \x00\x00\x00\x08if-match\
    \x00\x00\x00\x11if-modified-since\
    \x00\x00\x00\x0dif-none-match\
    \x00\x00\x00\x08if-range\
    \x00\x00\x00\x13if-unmodified-since\
    \x00\x00\x00\x0dlast-modified\
    \x00\x00\x00\x08location\
    \x00\x00\x00\x0cmax-forwards\
    \x00\x00\x00\x06pragma\
    \x00\x00\x00\x12proxy-authenticate\
    \x00\x00\x00\x13proxy-authorization\
    \x00\x00\x00\x05range\
    \x00\x00\x00\x07referer\
    \x00\x00\x00\x0bretry-after\
    \x00\x00\x00\x06server\
    \x00\x00\x00\x02te\
    \x00\x00\x00\x07trailer\
    \x00\x00\x00\x11transfer-encoding\
    \x00\x00\x00\x07upgrade\
    \x00\x00\x00\x0auser-agent\
    \x00\x00\x00\x04vary\
    \x00\x00\x00\x03via\
    \x00\x00\x00\x07warning\
    \x00\x00\x00\x10www-authenticate\
    \x00\x00\x00\x06method\
    \x00\x00\x00\x03get\
    \x00\x00\x00\x06status\
    \x00\x00\x00\x06200\x20OK\
    \x00\x00\x00\x07version\
    \x00\x00\x00\x08HTTP/1.1\
    \x00\x00\x00\x03url\
    \x00\x00\x00\x06public\
    \x00\x00\x00\x0aset-cookie\
    \x00\x00\x00\x0akeep-alive\
    \x00\x00\x00\x06origin\
    10010120120220520630030230330430530630740240540640740840\
    9410411412413414415416417502504505203\x20Non-Authoritative\x20\
    Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\x20Re\
    quest401\x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Inter\
    nal\x20Server\x20Error501\x20Not\x20Implemented503\x20Service\x20Unavailab\
    leJan\x20Feb\x20Mar\x20Apr\x20May\x20Jun\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00\
    :00\x20Mon,\x20Tue,\x20Wed,\x20Thu,\x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/h\
    tml,image/png,image/jpg,image/gif,application/xml,applic\
    ation/xhtml+xml,text/plain,text/javascript,publicprivate\
    max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1\
    ,utf-,*,enq=0.\
";

/// The zlib DICTID of [`SPDY3_DICTIONARY`]: its Adler-32 checksum.
pub(crate) const SPDY3_DICTIONARY_ID: u32 = 0xE3C6_A7C2;

#[cfg(test)]
mod tests {
    use super::*;

    /// Adler-32 (RFC 1950, section 8.2), computed independently of zlib.
    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in bytes {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        // SPDY/3.1 draft, 2.6.10.1: 1423 bytes, DICTID 0xE3C6A7C2.
        assert_eq!(SPDY3_DICTIONARY.len(), 1423);
        assert_eq!(adler32(SPDY3_DICTIONARY), 0xE3C6_A7C2);
        assert_eq!(adler32(SPDY3_DICTIONARY), SPDY3_DICTIONARY_ID);
        assert!(SPDY3_DICTIONARY.starts_with(b"\x00\x00\x00\x07options"));
        assert!(SPDY3_DICTIONARY.ends_with(b",utf-,*,enq=0."));
    }

    #[test]
    fn zlib_agrees_on_the_dictionary_id() {
        let mut c = flate2::Compress::new(flate2::Compression::default(), true);
        assert_eq!(c.set_dictionary(SPDY3_DICTIONARY).unwrap(), 0xE3C6_A7C2);
    }
}
