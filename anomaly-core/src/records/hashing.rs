//! Signed feature hashing with MurmurHash3 (x86, 32-bit), as scikit-learn's `FeatureHasher`.
//!
//! The hash is fixed (seed 0, UTF-8 bytes), so the same string lands in the same bucket with the same sign in every
//! process on every machine; tests pin values computed with `sklearn.utils.murmurhash3_32`.

/// MurmurHash3 x86_32 of `data` (Austin Appleby's reference algorithm), as a signed integer like scikit-learn's
/// `murmurhash3_32(data, seed)`.
pub fn murmur3_32(data: &[u8], seed: u32) -> i32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k |= (b as u32) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h as i32
}

/// Bucket and sign of a token in a space of `width` buckets: `|h| mod width`, and −1 when `h < 0`
/// (scikit-learn's `FeatureHasher(alternate_sign=True)`).
pub fn bucket(token: &str, width: usize) -> (usize, f64) {
    let h = murmur3_32(token.as_bytes(), 0);
    let index = (h as i64).unsigned_abs() as usize % width.max(1);
    (index, if h < 0 { -1.0 } else { 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_against_scikit_learn() {
        // sklearn.utils.murmurhash3_32(s, seed=0)
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"foo", 0), -156_908_512);
        assert_eq!(murmur3_32(b"country=KP", 0), 45_085_430);
        assert_eq!(murmur3_32(b"hello world", 0), 1_586_663_183);
        assert_eq!(murmur3_32("ünïcödé".as_bytes(), 0), 2_069_557_956);
    }

    #[test]
    fn buckets_are_signed_and_in_range() {
        assert_eq!(bucket("foo", 16), (156_908_512 % 16, -1.0));
        assert_eq!(bucket("country=KP", 8), (45_085_430 % 8, 1.0));
    }
}
