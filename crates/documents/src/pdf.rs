//! A small typesetter: a document's blocks (headings, paragraphs, quotes, tables) laid out on A4 pages and
//! written as PDF with krilla, in the bundled DejaVu Sans (subset into the file).
//!
//! Layout is ours because no pure-Rust HTML-to-PDF renderer is fit to depend on; the blocks are built from the
//! same view the HTML templates render, so both say the same thing. Text is measured with the font's own
//! advances, wrapped at spaces, and split across pages; a table repeats its header on each page.

use std::sync::OnceLock;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

use crate::DocumentError;

const REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");
const ITALIC: &[u8] = include_bytes!("../fonts/DejaVuSans-Oblique.ttf");

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN_X: f32 = 56.0;
const MARGIN_TOP: f32 = 56.0;
const MARGIN_BOTTOM: f32 = 64.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
const BODY: f32 = 10.0;
const SMALL: f32 = 8.5;
const LEADING: f32 = 1.38;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Regular,
    Bold,
    Italic,
}

/// A piece of text in one style.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    pub style: Style,
    pub text: String,
}

impl Span {
    pub fn regular(text: impl Into<String>) -> Self {
        Span {
            style: Style::Regular,
            text: text.into(),
        }
    }
    pub fn bold(text: impl Into<String>) -> Self {
        Span {
            style: Style::Bold,
            text: text.into(),
        }
    }
}

/// What a document is made of, top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    Title(String),
    /// Grey line under the title.
    Subtitle(String),
    Heading(String),
    Paragraph(Vec<Span>),
    /// A bullet point, with small grey text under it (what the point rests on); kept on one page.
    Bullet {
        spans: Vec<Span>,
        note: Option<String>,
    },
    /// A customer's words as written, with a label saying who, when and in which language.
    Quote {
        label: String,
        text: String,
    },
    /// Columns as fractions of the width; the header repeats on each page the table spans.
    Table {
        widths: Vec<f32>,
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Label and value pairs in two columns.
    Facts(Vec<(String, String)>),
    /// A highlighted box (what is missing), one line per entry.
    Callout {
        title: String,
        lines: Vec<String>,
    },
    Space(f32),
}

struct Fonts {
    regular: Font,
    bold: Font,
    italic: Font,
    faces: [rustybuzz::Face<'static>; 3],
}

fn fonts() -> Result<&'static Fonts, DocumentError> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let font = |bytes: &'static [u8]| Font::new(bytes.into(), 0);
            let face = |bytes: &'static [u8]| rustybuzz::Face::from_slice(bytes, 0);
            Some(Fonts {
                regular: font(REGULAR)?,
                bold: font(BOLD)?,
                italic: font(ITALIC)?,
                faces: [face(REGULAR)?, face(BOLD)?, face(ITALIC)?],
            })
        })
        .as_ref()
        .ok_or_else(|| DocumentError::Pdf("the bundled font could not be read".into()))
}

impl Fonts {
    fn font(&self, style: Style) -> Font {
        match style {
            Style::Regular => self.regular.clone(),
            Style::Bold => self.bold.clone(),
            Style::Italic => self.italic.clone(),
        }
    }

    fn face(&self, style: Style) -> &rustybuzz::Face<'static> {
        match style {
            Style::Regular => &self.faces[0],
            Style::Bold => &self.faces[1],
            Style::Italic => &self.faces[2],
        }
    }

    /// Width of `text` at `size`, shaped as krilla shapes it (kerning included).
    fn width(&self, style: Style, size: f32, text: &str) -> f32 {
        let face = self.face(style);
        let units = face.units_per_em().max(1) as f32;
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.set_direction(rustybuzz::Direction::LeftToRight);
        let shaped = rustybuzz::shape(face, &[], buffer);
        let advance: i64 = shaped.glyph_positions().iter().map(|p| i64::from(p.x_advance)).sum();
        advance as f32 * size / units
    }
}

#[derive(Debug, Clone, Copy)]
struct Color(u8, u8, u8);

const INK: Color = Color(0x1f, 0x23, 0x28);
const GREY: Color = Color(0x5b, 0x63, 0x6b);
const ACCENT: Color = Color(0x1d, 0x4e, 0x89);
const RULE: Color = Color(0xc8, 0xcd, 0xd3);
const SHADE: Color = Color(0xee, 0xf1, 0xf5);
const WARN_BG: Color = Color(0xfd, 0xf3, 0xe1);
const WARN: Color = Color(0xa3, 0x5b, 0x00);

enum Op {
    Text {
        x: f32,
        baseline: f32,
        style: Style,
        size: f32,
        color: Color,
        text: String,
    },
    Line {
        from: (f32, f32),
        to: (f32, f32),
        width: f32,
        color: Color,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Color,
    },
}

/// A line of words laid out: `(x offset, style, text)` runs.
type Line = Vec<(f32, Style, String)>;

/// Wraps styled text into lines no wider than `width`. Words longer than a line are cut by characters.
fn wrap(fonts: &Fonts, spans: &[Span], size: f32, width: f32) -> Vec<Line> {
    let mut words: Vec<(Style, String, bool)> = Vec::new(); // (style, word, space before)
    let mut pending_space = false;
    for span in spans {
        for (i, part) in span.text.split(' ').enumerate() {
            if i > 0 {
                pending_space = true;
            }
            if part.is_empty() {
                continue;
            }
            words.push((span.style, part.to_owned(), pending_space && !words.is_empty()));
            pending_space = false;
        }
    }
    let mut lines: Vec<Line> = Vec::new();
    let mut line: Line = Vec::new();
    let mut x = 0.0f32;
    for (style, word, space) in words {
        let space_w = if space && !line.is_empty() {
            fonts.width(style, size, " ")
        } else {
            0.0
        };
        let w = fonts.width(style, size, &word);
        if !line.is_empty() && x + space_w + w > width {
            lines.push(std::mem::take(&mut line));
            x = 0.0;
        }
        if line.is_empty() && w > width {
            // Cut an overlong word (a hash, a URL) into pieces that fit.
            let mut piece = String::new();
            for c in word.chars() {
                let mut next = piece.clone();
                next.push(c);
                if fonts.width(style, size, &next) > width && !piece.is_empty() {
                    lines.push(vec![(0.0, style, std::mem::take(&mut piece))]);
                }
                piece.push(c);
            }
            x = fonts.width(style, size, &piece);
            line.push((0.0, style, piece));
            continue;
        }
        let space_w = if line.is_empty() { 0.0 } else { space_w };
        match line.last_mut() {
            Some((_, last_style, text)) if *last_style == style => {
                if space_w > 0.0 {
                    text.push(' ');
                }
                text.push_str(&word);
            }
            _ => {
                let mut text = String::new();
                if space_w > 0.0 {
                    text.push(' ');
                }
                text.push_str(&word);
                line.push((x, style, text));
            }
        }
        x += space_w + w;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Splits text on newlines and wraps each paragraph line.
fn wrap_text(fonts: &Fonts, style: Style, text: &str, size: f32, width: f32) -> Vec<Line> {
    text.lines()
        .flat_map(|l| {
            let wrapped = wrap(
                fonts,
                &[Span {
                    style,
                    text: l.trim_end().to_owned(),
                }],
                size,
                width,
            );
            if wrapped.is_empty() { vec![Vec::new()] } else { wrapped }
        })
        .collect()
}

struct Pager<'f> {
    fonts: &'f Fonts,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl<'f> Pager<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Pager {
            fonts,
            pages: vec![Vec::new()],
            y: MARGIN_TOP,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN_TOP;
    }

    /// Makes room for `height`, starting a new page when it does not fit (unless the page is still empty).
    fn room(&mut self, height: f32) {
        if self.y + height > PAGE_H - MARGIN_BOTTOM && self.y > MARGIN_TOP {
            self.new_page();
        }
    }

    fn line(&mut self, x: f32, line: &Line, size: f32, color: Color) {
        let height = size * LEADING;
        self.room(height);
        let baseline = self.y + size;
        for (dx, style, text) in line {
            self.ops().push(Op::Text {
                x: x + dx,
                baseline,
                style: *style,
                size,
                color,
                text: text.clone(),
            });
        }
        self.y += height;
    }

    fn lines(&mut self, x: f32, lines: &[Line], size: f32, color: Color) {
        for line in lines {
            self.line(x, line, size, color);
        }
    }

    fn rule(&mut self, color: Color, width: f32) {
        let y = self.y;
        self.ops().push(Op::Line {
            from: (MARGIN_X, y),
            to: (PAGE_W - MARGIN_X, y),
            width,
            color,
        });
    }

    fn block(&mut self, block: &Block) {
        let fonts = self.fonts;
        match block {
            Block::Title(text) => {
                let lines = wrap_text(fonts, Style::Bold, text, 17.0, CONTENT_W);
                self.lines(MARGIN_X, &lines, 17.0, ACCENT);
                self.y += 2.0;
            }
            Block::Subtitle(text) => {
                let lines = wrap_text(fonts, Style::Regular, text, SMALL + 0.5, CONTENT_W);
                self.lines(MARGIN_X, &lines, SMALL + 0.5, GREY);
                self.y += 4.0;
                self.rule(ACCENT, 1.2);
                self.y += 10.0;
            }
            Block::Heading(text) => {
                // Keep a heading with at least three lines of what follows.
                self.room(12.0 * LEADING + 3.0 * BODY * LEADING + 12.0);
                self.y += 8.0;
                let lines = wrap_text(fonts, Style::Bold, text, 12.0, CONTENT_W);
                self.lines(MARGIN_X, &lines, 12.0, ACCENT);
                self.y += 1.0;
                self.rule(RULE, 0.6);
                self.y += 5.0;
            }
            Block::Paragraph(spans) => {
                let lines = wrap(fonts, spans, BODY, CONTENT_W);
                self.lines(MARGIN_X, &lines, BODY, INK);
                self.y += 5.0;
            }
            Block::Bullet { spans, note } => {
                let indent = 14.0;
                let lines = wrap(fonts, spans, BODY, CONTENT_W - indent);
                let note_lines = note
                    .as_deref()
                    .map(|n| wrap_text(fonts, Style::Regular, n, SMALL, CONTENT_W - indent))
                    .unwrap_or_default();
                self.room(lines.len() as f32 * BODY * LEADING + note_lines.len() as f32 * SMALL * LEADING);
                let baseline = self.y + BODY;
                self.ops().push(Op::Text {
                    x: MARGIN_X + 3.0,
                    baseline,
                    style: Style::Bold,
                    size: BODY,
                    color: ACCENT,
                    text: "•".into(),
                });
                self.lines(MARGIN_X + indent, &lines, BODY, INK);
                self.lines(MARGIN_X + indent, &note_lines, SMALL, GREY);
                self.y += 3.0;
            }
            Block::Quote { label, text } => {
                let indent = 16.0;
                let label_lines = wrap_text(fonts, Style::Bold, label, SMALL, CONTENT_W - indent);
                let body = wrap_text(fonts, Style::Italic, text, BODY, CONTENT_W - indent - 4.0);
                self.room(SMALL * LEADING + BODY * LEADING * 2.0);
                let start = self.y;
                let mut page = self.pages.len();
                self.lines(MARGIN_X + indent, &label_lines, SMALL, GREY);
                for line in &body {
                    self.line(MARGIN_X + indent, line, BODY, INK);
                    if self.pages.len() != page {
                        page = self.pages.len();
                    }
                }
                let top = if page == self.pages.len() && self.y > start {
                    start
                } else {
                    MARGIN_TOP
                };
                let bottom = self.y;
                self.ops().push(Op::Rect {
                    x: MARGIN_X + 2.0,
                    y: top,
                    w: 2.5,
                    h: bottom - top,
                    color: RULE,
                });
                self.y += 7.0;
            }
            Block::Table { widths, header, rows } => self.table(widths, header, rows),
            Block::Facts(pairs) => {
                let label_w = CONTENT_W * 0.3;
                for (label, value) in pairs {
                    let value_lines = wrap_text(fonts, Style::Regular, value, BODY, CONTENT_W - label_w);
                    let label_lines = wrap_text(fonts, Style::Bold, label, SMALL + 0.5, label_w - 8.0);
                    let rows = value_lines.len().max(label_lines.len()).max(1);
                    self.room(rows as f32 * BODY * LEADING);
                    let top = self.y;
                    self.lines(MARGIN_X, &label_lines, SMALL + 0.5, GREY);
                    let after_label = self.y;
                    self.y = top;
                    self.lines(MARGIN_X + label_w, &value_lines, BODY, INK);
                    self.y = self.y.max(after_label) + 1.0;
                }
                self.y += 4.0;
            }
            Block::Callout { title, lines } => {
                let pad = 8.0;
                let mut wrapped: Vec<Line> = wrap_text(fonts, Style::Bold, title, BODY, CONTENT_W - 2.0 * pad);
                for line in lines {
                    wrapped.extend(wrap(
                        fonts,
                        &[Span::regular(format!("– {line}"))],
                        BODY,
                        CONTENT_W - 2.0 * pad,
                    ));
                }
                let height = wrapped.len() as f32 * BODY * LEADING + 2.0 * pad;
                self.room(height.min(PAGE_H - MARGIN_TOP - MARGIN_BOTTOM));
                let top = self.y;
                self.ops().push(Op::Rect {
                    x: MARGIN_X,
                    y: top,
                    w: CONTENT_W,
                    h: height,
                    color: WARN_BG,
                });
                self.y += pad;
                for (i, line) in wrapped.iter().enumerate() {
                    self.line(MARGIN_X + pad, line, BODY, if i == 0 { WARN } else { INK });
                }
                self.y = top + height + 8.0;
            }
            Block::Space(h) => self.y += h,
        }
    }

    fn table(&mut self, widths: &[f32], header: &[String], rows: &[Vec<String>]) {
        let fonts = self.fonts;
        let pad = 4.0;
        let size = SMALL + 0.5;
        let cols: Vec<f32> = widths.iter().map(|w| w * CONTENT_W).collect();
        let cell_lines = |cells: &[String], style: Style| -> Vec<Vec<Line>> {
            cells
                .iter()
                .zip(&cols)
                .map(|(cell, w)| wrap_text(fonts, style, cell, size, w - 2.0 * pad))
                .collect()
        };
        let header_lines = cell_lines(header, Style::Bold);
        let row_height = |cells: &Vec<Vec<Line>>| -> f32 {
            cells.iter().map(Vec::len).max().unwrap_or(1) as f32 * size * LEADING + 2.0 * pad
        };
        let draw_row = |pager: &mut Pager<'_>, cells: &Vec<Vec<Line>>, shade: Option<Color>| {
            let h = row_height(cells);
            let top = pager.y;
            if let Some(color) = shade {
                pager.ops().push(Op::Rect {
                    x: MARGIN_X,
                    y: top,
                    w: CONTENT_W,
                    h,
                    color,
                });
            }
            let mut x = MARGIN_X;
            for (lines, w) in cells.iter().zip(&cols) {
                for (i, line) in lines.iter().enumerate() {
                    let baseline = top + pad + i as f32 * size * LEADING + size;
                    for (dx, style, text) in line {
                        pager.ops().push(Op::Text {
                            x: x + pad + dx,
                            baseline,
                            style: *style,
                            size,
                            color: INK,
                            text: text.clone(),
                        });
                    }
                }
                x += w;
            }
            pager.y = top + h;
            let y = pager.y;
            pager.ops().push(Op::Line {
                from: (MARGIN_X, y),
                to: (PAGE_W - MARGIN_X, y),
                width: 0.4,
                color: RULE,
            });
        };
        let header_h = row_height(&header_lines);
        let first_h = rows
            .first()
            .map(|r| row_height(&cell_lines(r, Style::Regular)))
            .unwrap_or(0.0);
        self.room(header_h + first_h);
        draw_row(self, &header_lines, Some(SHADE));
        for row in rows {
            let cells = cell_lines(row, Style::Regular);
            let h = row_height(&cells);
            if self.y + h > PAGE_H - MARGIN_BOTTOM {
                self.new_page();
                draw_row(self, &header_lines, Some(SHADE));
            }
            draw_row(self, &cells, None);
        }
        self.y += 8.0;
    }
}

fn color(c: Color) -> krilla::paint::Paint {
    rgb::Color::new(c.0, c.1, c.2).into()
}

fn fill(c: Color) -> Fill {
    Fill {
        paint: color(c),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

fn draw(surface: &mut Surface<'_>, fonts: &Fonts, op: &Op) {
    match op {
        Op::Text {
            x,
            baseline,
            style,
            size,
            color: c,
            text,
        } => {
            surface.set_fill(Some(fill(*c)));
            surface.draw_text(
                Point::from_xy(*x, *baseline),
                fonts.font(*style),
                *size,
                text,
                false,
                TextDirection::LeftToRight,
            );
        }
        Op::Line {
            from,
            to,
            width,
            color: c,
        } => {
            let mut path = PathBuilder::new();
            path.move_to(from.0, from.1);
            path.line_to(to.0, to.1);
            if let Some(path) = path.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke {
                    paint: color(*c),
                    width: *width,
                    ..Default::default()
                }));
                surface.draw_path(&path);
                surface.set_stroke(None);
            }
        }
        Op::Rect { x, y, w, h, color: c } => {
            let mut path = PathBuilder::new();
            if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                path.push_rect(rect);
                if let Some(path) = path.finish() {
                    surface.set_fill(Some(fill(*c)));
                    surface.draw_path(&path);
                }
            }
        }
    }
}

/// Lays out `blocks` and writes the PDF. `footer` is printed on every page, followed by "page N of M".
pub(crate) fn write(title: &str, footer: &str, blocks: &[Block]) -> Result<Vec<u8>, DocumentError> {
    let fonts = fonts()?;
    let mut pager = Pager::new(fonts);
    for block in blocks {
        pager.block(block);
    }
    let pages = pager.pages;
    let total = pages.len();
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(title.to_owned())
            .creator("Verdict".to_owned())
            .language("en".to_owned()),
    );
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H).ok_or_else(|| DocumentError::Pdf("page size".into()))?;
    for (index, ops) in pages.iter().enumerate() {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        // Backgrounds first so that text lies on top of them.
        for op in ops.iter().filter(|op| matches!(op, Op::Rect { .. })) {
            draw(&mut surface, fonts, op);
        }
        for op in ops.iter().filter(|op| !matches!(op, Op::Rect { .. })) {
            draw(&mut surface, fonts, op);
        }
        let footer_y = PAGE_H - MARGIN_BOTTOM + 28.0;
        draw(
            &mut surface,
            fonts,
            &Op::Line {
                from: (MARGIN_X, footer_y - 12.0),
                to: (PAGE_W - MARGIN_X, footer_y - 12.0),
                width: 0.4,
                color: RULE,
            },
        );
        draw(
            &mut surface,
            fonts,
            &Op::Text {
                x: MARGIN_X,
                baseline: footer_y,
                style: Style::Regular,
                size: 7.5,
                color: GREY,
                text: footer.to_owned(),
            },
        );
        let number = format!("Page {} of {total}", index + 1);
        let w = fonts.width(Style::Regular, 7.5, &number);
        draw(
            &mut surface,
            fonts,
            &Op::Text {
                x: PAGE_W - MARGIN_X - w,
                baseline: footer_y,
                style: Style::Regular,
                size: 7.5,
                color: GREY,
                text: number,
            },
        );
        surface.finish();
        page.finish();
    }
    document.finish().map_err(|e| DocumentError::Pdf(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_wraps_within_the_width_and_keeps_every_word() {
        let Ok(fonts) = fonts() else { panic!("fonts") };
        let text = "Délivré à l'adresse indiquée sur la commande, signé par le destinataire. ".repeat(8);
        let lines = wrap(fonts, &[Span::regular(text.clone())], BODY, 200.0);
        assert!(lines.len() > 5);
        for line in &lines {
            let width: f32 = line
                .iter()
                .map(|(x, s, t)| x + fonts.width(*s, BODY, t))
                .fold(0.0, f32::max);
            assert!(width <= 200.5, "{width}");
        }
        let joined: Vec<String> = lines
            .iter()
            .map(|l| l.iter().map(|(_, _, t)| t.as_str()).collect::<String>())
            .collect();
        assert_eq!(
            joined.join(" ").split_whitespace().count(),
            text.split_whitespace().count()
        );
    }

    #[test]
    fn an_overlong_word_is_cut_rather_than_overflowing() {
        let Ok(fonts) = fonts() else { panic!("fonts") };
        let hash = "a".repeat(200);
        let lines = wrap(fonts, &[Span::regular(hash.clone())], BODY, 100.0);
        assert!(lines.len() > 1);
        let joined: String = lines.iter().flat_map(|l| l.iter().map(|(_, _, t)| t.clone())).collect();
        assert_eq!(joined, hash);
    }

    #[test]
    fn a_long_table_spans_pages() {
        let rows: Vec<Vec<String>> = (0..200).map(|i| vec![format!("row {i}"), "x".into()]).collect();
        let blocks = vec![Block::Table {
            widths: vec![0.5, 0.5],
            header: vec!["A".into(), "B".into()],
            rows,
        }];
        let Ok(pdf) = write("t", "f", &blocks) else {
            panic!("pdf")
        };
        assert!(pdf.starts_with(b"%PDF-"));
        let Ok(fonts) = fonts() else { panic!("fonts") };
        let mut pager = Pager::new(fonts);
        for block in &blocks {
            pager.block(block);
        }
        assert!(pager.pages.len() >= 4, "{}", pager.pages.len());
    }
}
