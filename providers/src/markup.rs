//! Text into markup: one escaper for oplata's pages, the simulators' pages and the XML answers
//! the adapters write (NetPay's notification answer, Moneta's `MNT_RESPONSE`). It escapes the
//! five characters that matter in HTML and XML content and in quoted attribute values.

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_characters_are_escaped_and_the_rest_is_kept() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a> «ЖКХ»"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt; «ЖКХ»"
        );
    }
}
