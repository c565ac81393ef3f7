//! Byte sizes as people write them: `4096`, `4KiB`, `1.5 GiB`, `10GB`.

const UNITS: [(&str, u64); 10] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("", 1),
];

/// Parses a size; the error says what is wrong (the caller adds which flag or key it came from).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(format!("'{text}' does not start with a number"));
    }
    let mult = UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, m)| m)
        .ok_or_else(|| format!("unknown unit '{unit}' in '{text}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"))?;
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(|| format!("'{text}' is too large"));
    }
    let x: f64 = num.parse().map_err(|_| format!("'{num}' is not a number"))?;
    let bytes = x * mult as f64;
    if bytes.fract() != 0.0 {
        return Err(format!("'{text}' is not a whole number of bytes"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes as u64)
}

/// Exact binary form when there is one (`4 KiB`, `3 MiB`), else two decimals (`1.50 GiB`) or bytes.
pub fn format_size(n: u64) -> String {
    const NAMES: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut i = 0;
    while i + 1 < NAMES.len() && n >= 1 << (10 * (i + 1)) {
        i += 1;
    }
    let div = 1u64 << (10 * i);
    if n.is_multiple_of(div) {
        format!("{} {}", n / div, NAMES[i])
    } else {
        format!("{:.2} {}", n as f64 / div as f64, NAMES[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4 kib"), Ok(4096));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("3 MB"), Ok(3_000_000));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse_size("12XB").unwrap_err().contains("unknown unit 'XB'"));
        assert!(parse_size("").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("1.5B").unwrap_err().contains("whole number"));
        assert!(parse_size("99999999999TiB").unwrap_err().contains("too large"));
        assert!(parse_size("1.2.3MiB").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(3000), "2.93 KiB");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(3 << 29), "1.50 GiB");
        assert_eq!(format_size(0), "0 B");
    }
}
