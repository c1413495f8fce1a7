//! Kinds of flood packets and the mix that picks one per packet by weight
//! (`syn=80,ack=15,rst=5`).
//!
//! Picking costs one random number and a scan of five thresholds; it never allocates.

use std::fmt;
use std::str::FromStr;

/// A kind of flood packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Kind {
    /// A SYN from a spoofed source, options of a real stack (rotated per packet).
    Syn,
    /// An ACK with a random tuple, sequence and acknowledgment number.
    Ack,
    /// An ACK answering a SYN-ACK the target sent to one of our spoofed SYNs, with the cookie
    /// nearly right: one bit flipped, or replayed from another port or address.
    NearMiss,
    /// A RST with a random tuple and sequence number.
    Rst,
    /// A FIN+ACK with a random tuple, sequence and acknowledgment number.
    Fin,
}

/// The number of kinds.
pub const KIND_COUNT: usize = 5;

impl Kind {
    /// Every kind, in index order.
    pub const ALL: [Kind; KIND_COUNT] =
        [Kind::Syn, Kind::Ack, Kind::NearMiss, Kind::Rst, Kind::Fin];

    /// The kind's position in [`Kind::ALL`] and in per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Syn => "syn",
            Kind::Ack => "ack",
            Kind::NearMiss => "near-miss",
            Kind::Rst => "rst",
            Kind::Fin => "fin",
        }
    }
}

/// A malformed `--mix`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("{0:?} is not KIND=WEIGHT (kinds: syn, ack, near-miss, rst, fin)")]
    Syntax(String),
    #[error("{0} appears twice")]
    Repeated(&'static str),
    #[error("the weights add up to zero")]
    Empty,
    #[error("the weights add up to more than {}", u32::MAX)]
    TooLarge,
}

/// Weights per kind; at least one is positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; KIND_COUNT],
}

impl Mix {
    /// Only `kind`.
    pub fn only(kind: Kind) -> Mix {
        let mut weights = [0; KIND_COUNT];
        weights[kind.index()] = 1;
        Mix { weights }
    }

    /// Whether `kind` has a positive weight.
    pub fn includes(&self, kind: Kind) -> bool {
        self.weights[kind.index()] > 0
    }

    /// The picker for this mix.
    pub fn picker(&self) -> KindPicker {
        let mut thresholds = [0; KIND_COUNT];
        let mut total = 0;
        for (threshold, weight) in thresholds.iter_mut().zip(self.weights) {
            total += weight;
            *threshold = total;
        }
        KindPicker { thresholds, total }
    }
}

impl FromStr for Mix {
    type Err = MixError;

    fn from_str(text: &str) -> Result<Mix, MixError> {
        let mut weights = [0u32; KIND_COUNT];
        let mut seen = [false; KIND_COUNT];
        for item in text.split(',') {
            let syntax = || MixError::Syntax(item.to_owned());
            let (name, weight) = item.split_once('=').ok_or_else(syntax)?;
            let kind = Kind::ALL
                .into_iter()
                .find(|kind| kind.name() == name.trim())
                .ok_or_else(syntax)?;
            let weight: u32 = weight.trim().parse().map_err(|_| syntax())?;
            if std::mem::replace(&mut seen[kind.index()], true) {
                return Err(MixError::Repeated(kind.name()));
            }
            weights[kind.index()] = weight;
        }
        let total = weights
            .iter()
            .try_fold(0u32, |sum, weight| sum.checked_add(*weight))
            .ok_or(MixError::TooLarge)?;
        if total == 0 {
            return Err(MixError::Empty);
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in Kind::ALL {
            let weight = self.weights[kind.index()];
            if weight > 0 {
                let separator = if first { "" } else { "," };
                write!(f, "{separator}{}={weight}", kind.name())?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Picks a kind from a uniform random number, with the probabilities of a [`Mix`].
#[derive(Debug, Clone, Copy)]
pub struct KindPicker {
    /// Running sums of the weights.
    thresholds: [u32; KIND_COUNT],
    total: u32,
}

impl KindPicker {
    /// The kind for `random`, uniform over all of `u32`.
    #[inline]
    pub fn pick(&self, random: u32) -> Kind {
        // Scale into 0..total without division.
        let point = ((u64::from(random) * u64::from(self.total)) >> 32) as u32;
        for (kind, threshold) in Kind::ALL.into_iter().zip(self.thresholds) {
            if point < threshold {
                return kind;
            }
        }
        unreachable!("point is below the total, the last threshold")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_and_display() {
        let mix: Mix = "syn=80, ack=15,rst=5".parse().unwrap();
        assert_eq!(mix.to_string(), "syn=80,ack=15,rst=5");
        assert!(mix.includes(Kind::Syn) && !mix.includes(Kind::NearMiss));
        assert_eq!(
            "near-miss=1".parse::<Mix>().unwrap(),
            Mix::only(Kind::NearMiss)
        );
    }

    #[test]
    fn test_parse_errors() {
        assert_eq!(
            "syn".parse::<Mix>(),
            Err(MixError::Syntax("syn".to_owned()))
        );
        assert_eq!(
            "udp=3".parse::<Mix>(),
            Err(MixError::Syntax("udp=3".to_owned()))
        );
        assert_eq!(
            "syn=-1".parse::<Mix>(),
            Err(MixError::Syntax("syn=-1".to_owned()))
        );
        assert_eq!("syn=1,syn=2".parse::<Mix>(), Err(MixError::Repeated("syn")));
        assert_eq!("syn=0,ack=0".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!(
            "syn=4294967295,ack=1".parse::<Mix>(),
            Err(MixError::TooLarge)
        );
    }

    #[test]
    fn test_picker_follows_the_weights() {
        let picker = "syn=80,ack=15,rst=5".parse::<Mix>().unwrap().picker();
        let mut counts = [0u32; KIND_COUNT];
        // An even sweep over u32 stands in for a uniform source.
        let steps = 100_000u32;
        for step in 0..steps {
            let random = (u64::from(step) * (1 << 32)).div_ceil(u64::from(steps)) as u32;
            counts[picker.pick(random).index()] += 1;
        }
        assert_eq!(counts, [80_000, 15_000, 0, 5_000, 0]);
        assert_eq!(picker.pick(u32::MAX), Kind::Rst);
        assert_eq!(picker.pick(0), Kind::Syn);
    }
}
