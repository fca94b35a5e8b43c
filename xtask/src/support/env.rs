//! The process environment as a lookup function, the shape every environment-reading
//! check takes (`&dyn Fn(&str) -> Option<String>`), so tests can pass their own.
//!
//! Owns nothing else; knows nothing of CI.

/// The process environment, with empty values counted as unset (GitHub Actions passes
/// an unset secret as an empty string).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
