//! Bounds on free text that travels into notices, events and answers.
//! Long text is truncated with a visible marker, never rejected: real
//! records have long `details`, and a feed must not be refused for it.

/// Longest record summary (OSV `summary`, failure `summary`), in bytes.
pub const SUMMARY_LEN_MAX: usize = 1024;
/// Longest record details (OSV `details`, failure `details`), in bytes.
pub const DETAILS_LEN_MAX: usize = 64 << 10;
/// Longest artifact name, in bytes.
pub const NAME_LEN_MAX: usize = 256;
/// Longest free severity word of a failure, in bytes.
pub const SEVERITY_LEN_MAX: usize = 64;
/// Longest version string in an advisory's events (longer ranges are
/// reported as unsupported), in bytes.
pub const VERSION_LEN_MAX: usize = 256;
/// Most aliases of a record kept, and the longest one, in bytes.
pub const ALIASES_MAX: usize = 256;
pub const ALIAS_LEN_MAX: usize = 256;
/// Longest purl accepted in an inventory, in bytes.
pub const PURL_LEN_MAX: usize = 2048;

/// Appended to truncated text.
pub const TRUNCATED: &str = " …[truncated]";

/// Cuts `text` to at most `max` bytes (on a character boundary) and marks
/// the cut; answers whether it cut.
pub fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(TRUNCATED);
    true
}

/// [`truncate`] on an optional text.
pub fn truncate_opt(text: &mut Option<String>, max: usize) -> bool {
    text.as_mut().is_some_and(|t| truncate(t, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole_and_marks_the_cut() {
        let mut s = "é".repeat(100);
        assert!(truncate(&mut s, 51));
        assert!(s.len() <= 51 && s.ends_with(TRUNCATED), "{s}");
        let mut short = "short".to_string();
        assert!(!truncate(&mut short, 5));
        assert_eq!(short, "short");
    }
}
