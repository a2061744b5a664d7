//! Flame graph (SVG, via inferno) from folded stacks.

use std::io::Write;

/// Renders folded lines (`a;b;c 123`) as an interactive SVG flame graph.
pub fn render(
    lines: &[String],
    title: &str,
    subtitle: Option<&str>,
    bytes: bool,
    out: impl Write,
) -> std::io::Result<()> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_owned();
    opts.subtitle = subtitle.map(str::to_owned);
    opts.count_name = if bytes {
        "bytes".into()
    } else {
        "objects".into()
    };
    opts.name_type = "Function:".into();
    opts.colors =
        inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    // Keep tiny frames out of the file (they are invisible anyway).
    opts.min_width = 0.05;
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    if refs.is_empty() {
        // inferno refuses empty input; draw a single empty frame instead.
        return inferno::flamegraph::from_lines(&mut opts, ["(nothing) 1"], out)
            .map_err(std::io::Error::other);
    }
    inferno::flamegraph::from_lines(&mut opts, refs, out).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_an_svg_with_the_title() {
        let mut out = Vec::new();
        super::render(
            &["main;leak 4096".into(), "main;other 1024".into()],
            "mariadbd pid 1: 5.0 KiB",
            Some("sub"),
            true,
            &mut out,
        )
        .unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("<svg"), "{}", &svg[..200.min(svg.len())]);
        assert!(svg.contains("mariadbd pid 1: 5.0 KiB"));
        assert!(svg.contains("leak"));
    }
}
