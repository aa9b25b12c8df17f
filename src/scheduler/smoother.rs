//! Smoothing of the live verdicts: an exponential moving average of the
//! class probabilities, with hysteresis on the genre reported.

use crate::frontend::argmax;

/// Exponential moving average of the class probabilities, with hysteresis
/// on the reported genre.
#[derive(Debug, Clone)]
pub struct Smoother {
    alpha: f32,
    margin: f32,
    ema: Vec<f32>,
    primed: bool,
    current: Option<usize>,
}

impl Smoother {
    /// Averages over about `span` windows (`alpha = 2 / (span + 1)`); a new
    /// genre must beat the reported one by `margin`.
    pub fn new(classes: usize, span: usize, margin: f32) -> Self {
        Smoother {
            alpha: 2.0 / (span.max(1) as f32 + 1.0),
            margin: margin.max(0.0),
            ema: vec![0.0; classes],
            primed: false,
            current: None,
        }
    }

    /// Forgets the history (after silence or a device change).
    pub fn reset(&mut self) {
        self.primed = false;
        self.current = None;
    }

    /// Adds one window's probabilities; returns the reported genre and its
    /// smoothed probability.
    pub fn update(&mut self, probs: &[f32]) -> (usize, f32) {
        if self.primed {
            for (e, &p) in self.ema.iter_mut().zip(probs) {
                *e += self.alpha * (p - *e);
            }
        } else {
            let n = self.ema.len();
            self.ema.copy_from_slice(&probs[..n]);
            self.primed = true;
        }
        let best = argmax(&self.ema);
        let current = match self.current {
            Some(c) if self.ema[best] < self.ema[c] + self.margin => c,
            _ => best,
        };
        self.current = Some(current);
        (current, self.ema[current])
    }

    /// The smoothed probabilities.
    pub fn probs(&self) -> &[f32] {
        &self.ema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_holds_a_close_call() {
        let mut s = Smoother::new(2, 1, 0.1);
        assert_eq!(s.update(&[0.6, 0.4]).0, 0);
        // Class 1 now leads, but by less than the margin: keep class 0.
        assert_eq!(s.update(&[0.47, 0.53]).0, 0);
        // A clear lead switches.
        assert_eq!(s.update(&[0.2, 0.8]).0, 1);
        s.reset();
        assert_eq!(s.update(&[0.7, 0.3]).0, 0);
    }

    #[test]
    fn smoothing_averages_recent_windows() {
        let mut s = Smoother::new(2, 3, 0.0);
        s.update(&[1.0, 0.0]);
        s.update(&[0.0, 1.0]);
        // alpha = 0.5: halfway.
        assert!((s.probs()[0] - 0.5).abs() < 1e-6);
    }
}
