//! How drives form erasure sets, how much parity they carry, and where an object's shards go.

use thiserror::Error;

pub const MIN_SET: usize = 2;
pub const MAX_SET: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("{0} drives cannot be split into erasure sets of 2..16 drives")]
    NoSetSize(usize),
    #[error("parity {parity} is too high for sets of {set} drives (at most {max})")]
    ParityTooHigh {
        parity: usize,
        set: usize,
        max: usize,
    },
}

/// The shape of a deployment: `sets` erasure sets of `set_size` drives, each with `parity` parity shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub sets: usize,
    pub set_size: usize,
    pub parity: usize,
}

impl Layout {
    /// Chooses the layout for `drives` drives; `parity` overrides the default.
    pub fn plan(drives: usize, parity: Option<usize>) -> Result<Self, LayoutError> {
        let (sets, set_size) = if drives == 1 {
            (1, 1)
        } else {
            let size = (MIN_SET..=MAX_SET)
                .rev()
                .find(|s| drives.is_multiple_of(*s))
                .ok_or(LayoutError::NoSetSize(drives))?;
            (drives / size, size)
        };
        let max = set_size / 2;
        let parity = parity.unwrap_or_else(|| default_parity(set_size));
        if parity > max {
            return Err(LayoutError::ParityTooHigh {
                parity,
                set: set_size,
                max,
            });
        }
        Ok(Self {
            sets,
            set_size,
            parity,
        })
    }

    pub fn data(&self) -> usize {
        self.set_size - self.parity
    }

    /// Drives that must take a write: `data`, one more when data == parity so two halves cannot both win.
    pub fn write_quorum(&self) -> usize {
        if self.data() == self.parity {
            self.data() + 1
        } else {
            self.data()
        }
    }

    pub fn read_quorum(&self) -> usize {
        self.data()
    }
}

/// MinIO's defaults: EC:2 for 4-5 drives, EC:3 for 6-7, EC:4 from 8 up.
pub fn default_parity(set_size: usize) -> usize {
    match set_size {
        0 | 1 => 0,
        2 | 3 => 1,
        4 | 5 => 2,
        6 | 7 => 3,
        _ => 4,
    }
}

/// The set-drive index holding shard `i` of an object: a rotation that starts at `seed % n`,
/// so objects spread their data shards over every drive.
pub fn distribution(seed: u64, n: usize) -> Vec<u32> {
    let start = usize::try_from(seed % n as u64).unwrap_or(0);
    (0..n).map(|i| ((start + i) % n) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_drive_has_no_parity() {
        assert_eq!(
            Layout::plan(1, None).unwrap(),
            Layout {
                sets: 1,
                set_size: 1,
                parity: 0
            }
        );
    }

    #[test]
    fn defaults() {
        assert_eq!(Layout::plan(4, None).unwrap().parity, 2);
        let six = Layout::plan(6, None).unwrap();
        assert_eq!((six.sets, six.set_size, six.parity), (1, 6, 3));
        assert_eq!(
            Layout::plan(32, None).unwrap(),
            Layout {
                sets: 2,
                set_size: 16,
                parity: 4
            }
        );
        assert_eq!(
            Layout::plan(18, None).unwrap(),
            Layout {
                sets: 2,
                set_size: 9,
                parity: 4
            }
        );
    }

    #[test]
    fn quorums() {
        let l = Layout::plan(6, Some(2)).unwrap();
        assert_eq!((l.read_quorum(), l.write_quorum()), (4, 4));
        let l = Layout::plan(4, Some(2)).unwrap();
        assert_eq!((l.read_quorum(), l.write_quorum()), (2, 3));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Layout::plan(6, Some(4)),
            Err(LayoutError::ParityTooHigh {
                parity: 4,
                set: 6,
                max: 3
            })
        );
        assert_eq!(Layout::plan(17, None), Err(LayoutError::NoSetSize(17)));
    }

    #[test]
    fn distribution_is_a_permutation() {
        for seed in [0u64, 5, 123_456_789] {
            let mut d = distribution(seed, 6);
            d.sort_unstable();
            assert_eq!(d, vec![0, 1, 2, 3, 4, 5]);
        }
    }
}
