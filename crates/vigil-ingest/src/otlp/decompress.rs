//! Capped gzip decoding: a small compressed body must not inflate into unbounded memory
//! (the CVE-2024-36129 class of decompression bombs).

use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid gzip body: {0}")]
    Invalid(#[from] std::io::Error),
}

pub fn gunzip_capped(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(body);
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    decoder.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn inflates_within_the_limit_and_refuses_bombs() {
        assert_eq!(gunzip_capped(&gzip(b"hello"), 5).unwrap(), b"hello");
        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024);
        assert!(matches!(
            gunzip_capped(&bomb, 1024 * 1024),
            Err(DecompressError::TooLarge { .. })
        ));
        assert!(matches!(
            gunzip_capped(b"not gzip", 100),
            Err(DecompressError::Invalid(_))
        ));
    }
}
