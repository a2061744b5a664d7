//! Compression bombs made cheaply: a small file that inflates to gigabytes, without the
//! test compressing gigabytes.

/// Raw deflate blocks for `chunk`, ended by a full flush: byte aligned, no reference to
/// what came before, so the same bytes can be repeated to inflate `chunk` again and again.
pub fn deflate_unit(chunk: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(chunk.len() + 1024);
    c.compress_vec(chunk, &mut out, flate2::FlushCompress::Full)
        .unwrap();
    assert_eq!(c.total_in(), chunk.len() as u64);
    out
}

/// A gzip stream of `head` followed by `n` times `chunk` (CRC left zero: a reader
/// that gets that far has read everything already).
pub fn gzip_repeated(head: &[u8], chunk: &[u8], n: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend_from_slice(&deflate_unit(head));
    let unit = deflate_unit(chunk);
    for _ in 0..n {
        out.extend_from_slice(&unit);
    }
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&((head.len() as u64 + chunk.len() as u64 * n) as u32).to_le_bytes());
    out
}
