//! A line chart as inline SVG, drawn here: metrics over time without any
//! script or library.

use std::fmt::Write as _;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 140.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 20.0;

/// An SVG chart of `points` (Unix ms, value) with the element id `id`.
pub fn line(id: &str, title: &str, unit: &str, points: &[(i64, f64)]) -> String {
    let mut svg = format!(
        "<svg class=\"chart\" id=\"{id}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\">\
         <text x=\"{LEFT}\" y=\"12\">{title} ({unit})</text>"
    );
    if points.len() < 2 {
        svg.push_str("<text x=\"60\" y=\"70\">not enough samples yet</text></svg>");
        return svg;
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let (lo, hi) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), (_, v)| {
            (lo.min(*v), hi.max(*v))
        });
    let (lo, hi) = if (hi - lo).abs() < f64::EPSILON {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let span_t = (t1 - t0).max(1) as f64;
    let plot_h = HEIGHT - BOTTOM - 18.0;
    let coords: Vec<String> = points
        .iter()
        .map(|(t, v)| {
            let x = LEFT + (WIDTH - LEFT - 8.0) * ((t - t0) as f64 / span_t);
            let y = 18.0 + plot_h * (1.0 - (v - lo) / (hi - lo));
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"24\">{hi:.1}</text><text x=\"2\" y=\"{:.0}\">{lo:.1}</text>\
         <text x=\"{LEFT}\" y=\"{:.0}\">{} minutes</text>\
         <polyline points=\"{}\"/></svg>",
        HEIGHT - BOTTOM,
        HEIGHT - 4.0,
        ((t1 - t0) as f64 / 60_000.0).round(),
        coords.join(" ")
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn draws_a_polyline_through_every_point() {
        let svg = line(
            "c",
            "memory",
            "MB",
            &[(0, 1.0), (60_000, 3.0), (120_000, 2.0)],
        );
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 3);
        assert!(svg.contains("2 minutes"));
        assert!(line("c", "m", "MB", &[(0, 1.0)]).contains("not enough samples"));
    }
}
