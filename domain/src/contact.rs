//! Checks shared by everything that carries contact details.

/// Whether `email` (trimmed) looks like an e-mail address: something before one `@`, a dot in
/// the host, no spaces, at most 254 characters. Deliverability is the mail system's business.
pub fn plausible_email(email: &str) -> bool {
    email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, host)| !local.is_empty() && host.contains('.'))
        && !email.contains(char::is_whitespace)
}
