//! The run report in a real browser and a strict parser: html5lib (the WHATWG parsing
//! algorithm) in strict mode, which raises on the first parse error, and headless Chromium,
//! which renders the page to a PNG that is then decoded and looked at.

#![allow(dead_code, reason = "each test binary that includes this uses a part of it")]

use std::path::Path;

/// The browser window, and so the screenshot.
pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 3200;

/// Parses `page` with html5lib in strict mode; panics with the parser's complaint.
pub fn parses_strictly(page: &Path) {
    let sh = xshell::Shell::new().unwrap();
    let script = "import sys, html5lib\n\
                  with open(sys.argv[1], 'rb') as f:\n    \
                  html5lib.HTMLParser(strict=True).parse(f)\n";
    let out = xshell::cmd!(sh, "python -c {script} {page}").ignore_status().quiet().output().unwrap();
    assert!(
        out.status.success(),
        "{} is not strictly valid HTML5 (or html5lib is missing: the tools stage installs it):\n{}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a screenshot shows, coarsely.
pub struct Shot {
    pub width: u32,
    pub height: u32,
    /// Share of pixels that are not the page's background.
    pub inked: f64,
    /// Distinct colours, up to 4,096.
    pub colours: usize,
    /// Share of pixels that are strongly coloured (the bars, the heatmap, the badges).
    pub coloured: f64,
}

/// Renders `page` with headless Chromium into `png` and describes the result.
pub fn screenshot(page: &Path, png: &Path) -> Shot {
    let sh = xshell::Shell::new().unwrap();
    let url = format!("file://{}", page.display());
    let shot = format!("--screenshot={}", png.display());
    let size = format!("--window-size={WIDTH},{HEIGHT}");
    let profile = tempfile::tempdir().unwrap();
    let profile = format!("--user-data-dir={}", profile.path().display());
    let out = xshell::cmd!(
        sh,
        "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-extensions --disable-background-networking {profile} {size} {shot} {url}"
    )
    .ignore_status()
    .quiet()
    .output()
    .expect("chromium is not installed: the tools stage installs it (tools/system-packages.txt)");
    assert!(png.is_file(), "chromium wrote no screenshot ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    describe(png)
}

fn describe(png: &Path) -> Shot {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3 && info.bit_depth == png::BitDepth::Eight, "an 8-bit RGB(A) screenshot");
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    // The page's background is its most common colour.
    let mut counts = std::collections::HashMap::new();
    for p in &pixels {
        *counts.entry(*p).or_insert(0usize) += 1;
    }
    let background = *counts.iter().max_by_key(|(_, n)| **n).map(|(c, _)| c).unwrap();
    let n = pixels.len() as f64;
    let inked = pixels.iter().filter(|p| **p != background).count() as f64 / n;
    let coloured = pixels
        .iter()
        .filter(|p| {
            let (hi, lo) = (*p.iter().max().unwrap() as i32, *p.iter().min().unwrap() as i32);
            hi - lo > 80
        })
        .count() as f64
        / n;
    Shot { width: info.width, height: info.height, inked, colours: counts.len().min(4096), coloured }
}
