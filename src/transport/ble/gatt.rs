//! Which characteristic to write commands to and which to listen on. Pure, so every module
//! layout in the reference (§1.2) is tested without a radio:
//!
//! - most modules: one 0xFFE1 with write and notify;
//! - "new" modules (MAC 20:21:11:…): **two** 0xFFE1 — one write-only, one read/notify;
//! - old modules add 0xFFE2 (ignored).

/// What jkmon needs to know of a characteristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharProps {
    pub write: bool,
    pub write_without_response: bool,
    pub notify: bool,
}

/// The chosen pair, as indexes into the candidates (the same index when one does both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub write: usize,
    pub notify: usize,
    /// Commands go as ATT Write Command (without response), as the JK app sends them.
    pub without_response: bool,
}

/// Picks among the 0xFFE1 characteristics of service 0xFFE0: one that does both if there is
/// one, else a writable one and a notifying one.
pub fn choose(candidates: &[CharProps]) -> Option<Choice> {
    let can_write = |c: &CharProps| c.write || c.write_without_response;
    let (write, notify) = if let Some(i) = candidates.iter().position(|c| can_write(c) && c.notify)
    {
        (i, i)
    } else {
        (
            candidates.iter().position(can_write)?,
            candidates.iter().position(|c| c.notify)?,
        )
    };
    Some(Choice {
        write,
        notify,
        without_response: candidates[write].write_without_response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: CharProps = CharProps {
        write: true,
        write_without_response: true,
        notify: true,
    };
    const WRITE_ONLY: CharProps = CharProps {
        write: true,
        write_without_response: true,
        notify: false,
    };
    const NOTIFY_ONLY: CharProps = CharProps {
        write: false,
        write_without_response: false,
        notify: true,
    };

    #[test]
    fn one_characteristic_does_both() {
        assert_eq!(
            choose(&[BOTH]),
            Some(Choice {
                write: 0,
                notify: 0,
                without_response: true
            })
        );
    }

    #[test]
    fn two_characteristics_are_picked_by_properties_in_either_order() {
        let c = choose(&[WRITE_ONLY, NOTIFY_ONLY]).unwrap();
        assert_eq!((c.write, c.notify), (0, 1));
        let c = choose(&[NOTIFY_ONLY, WRITE_ONLY]).unwrap();
        assert_eq!((c.write, c.notify), (1, 0));
    }

    #[test]
    fn write_with_response_only_when_that_is_all_there_is() {
        let c = choose(&[CharProps {
            write: true,
            write_without_response: false,
            notify: true,
        }])
        .unwrap();
        assert!(!c.without_response);
    }

    #[test]
    fn nothing_usable_is_none() {
        assert_eq!(choose(&[]), None);
        assert_eq!(choose(&[NOTIFY_ONLY]), None);
        assert_eq!(choose(&[WRITE_ONLY]), None);
    }
}
