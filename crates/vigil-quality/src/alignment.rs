//! How well an evaluator agrees with humans, and humans with each other.
//!
//! Matthews correlation coefficient (MCC) is the headline: unlike accuracy it stays honest when
//! failures are rare (an evaluator that always says "pass" on 98 % passing traffic has 98 %
//! agreement and an MCC of 0). "Positive" here means "failing": the evaluator flags what a human
//! labelled bad.

use serde::Serialize;

/// Counts of (evaluator says fail?, human says fail?) on the same items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub true_positive: u64,
    pub false_positive: u64,
    pub true_negative: u64,
    pub false_negative: u64,
}

impl Confusion {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut c = Self::default();
        for (evaluator_fail, human_fail) in pairs {
            match (evaluator_fail, human_fail) {
                (true, true) => c.true_positive += 1,
                (true, false) => c.false_positive += 1,
                (false, false) => c.true_negative += 1,
                (false, true) => c.false_negative += 1,
            }
        }
        c
    }

    pub fn n(&self) -> u64 {
        self.true_positive + self.false_positive + self.true_negative + self.false_negative
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Alignment {
    pub n: u64,
    /// In [-1, 1]; `None` when undefined (a row or column of the matrix is empty).
    pub mcc: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Share of items where evaluator and human agree.
    pub agreement: Option<f64>,
    pub confusion: Confusion,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

pub fn alignment(c: Confusion) -> Alignment {
    let (tp, fp, tn, fn_) = (
        c.true_positive as f64,
        c.false_positive as f64,
        c.true_negative as f64,
        c.false_negative as f64,
    );
    let denominator = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    Alignment {
        n: c.n(),
        mcc: (denominator > 0.0).then(|| (tp * tn - fp * fn_) / denominator),
        precision: ratio(c.true_positive, c.true_positive + c.false_positive),
        recall: ratio(c.true_positive, c.true_positive + c.false_negative),
        agreement: ratio(c.true_positive + c.true_negative, c.n()),
        confusion: c,
    }
}

/// Alignment from (evaluator passed, human passed) pairs, as the store gives them ("positive" is
/// failing, so both verdicts are flipped).
pub fn from_verdicts(pairs: impl IntoIterator<Item = (bool, bool)>) -> Alignment {
    alignment(Confusion::from_pairs(
        pairs.into_iter().map(|(e, h)| (!e, !h)),
    ))
}

/// Cohen's kappa between two annotators' labels on the same items (agreement beyond chance).
pub fn cohens_kappa(pairs: &[(bool, bool)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.is_empty() {
        return None;
    }
    let observed = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let a_yes = pairs.iter().filter(|(a, _)| *a).count() as f64 / n;
    let b_yes = pairs.iter().filter(|(_, b)| *b).count() as f64 / n;
    let expected = a_yes * b_yes + (1.0 - a_yes) * (1.0 - b_yes);
    if (1.0 - expected).abs() < f64::EPSILON {
        return None;
    }
    Some((observed - expected) / (1.0 - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn mcc_matches_hand_computed_values() {
        // TP 6, FP 2, TN 10, FN 2: MCC = (60 - 4) / sqrt(8 * 8 * 12 * 12) = 56 / 96.
        let a = alignment(Confusion {
            true_positive: 6,
            false_positive: 2,
            true_negative: 10,
            false_negative: 2,
        });
        assert!(close(a.mcc, 56.0 / 96.0), "{a:?}");
        assert!(close(a.precision, 0.75));
        assert!(close(a.recall, 0.75));
        assert!(close(a.agreement, 16.0 / 20.0));
        assert_eq!(a.n, 20);
    }

    #[test]
    fn mcc_sees_through_a_lazy_evaluator() {
        // Always "pass" on 49 passes and 1 failure: 98 % agreement, no information.
        let pairs = (0..50).map(|i| (false, i == 0));
        let a = alignment(Confusion::from_pairs(pairs));
        assert!(close(a.agreement, 0.98));
        assert_eq!(a.mcc, None);
        // Perfect and perfectly wrong.
        let perfect = alignment(Confusion::from_pairs([(true, true), (false, false)]));
        assert!(close(perfect.mcc, 1.0));
        let inverted = alignment(Confusion::from_pairs([(true, false), (false, true)]));
        assert!(close(inverted.mcc, -1.0));
    }

    #[test]
    fn kappa_matches_hand_computed_values() {
        // 10 items: both bad 3, both good 5, disagree 2 (one each way).
        // p_o = 0.8; p_a(bad) = 0.4, p_b(bad) = 0.4; p_e = 0.16 + 0.36 = 0.52; κ = 0.28 / 0.48.
        let mut pairs = vec![(true, true); 3];
        pairs.extend(vec![(false, false); 5]);
        pairs.push((true, false));
        pairs.push((false, true));
        assert!(close(cohens_kappa(&pairs), 0.28 / 0.48));
        assert_eq!(cohens_kappa(&[]), None);
    }
}
