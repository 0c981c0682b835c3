//! The bot's `/switch` (JK_BMS_CONTROL): a menu of the switches each battery's board can set,
//! as inline buttons; a press asks for confirmation; only the confirmation sends the write,
//! and the message then says what the BMS answered. Only allowed chats get here (see
//! [`super`]); every write is recorded with the chat's id.
//!
//! Callback data: `sw:ask:<battery>:<switch>:<0|1>`, `sw:do:<battery>:<switch>:<0|1>`,
//! `sw:cancel`.

use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::control::{Controller, Source};
use crate::protocol::control::{on_off, Setting};
use crate::protocol::Variant;
use crate::store::read::StatusView;
use crate::telegram::escape;

/// What a press asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// A switch in the menu: ask for confirmation.
    Ask(usize, Setting),
    /// Confirmed: send it.
    Do(usize, Setting),
    Cancel,
}

impl Press {
    pub fn parse(data: &str) -> Option<Press> {
        let rest = data.strip_prefix("sw:")?;
        if rest == "cancel" {
            return Some(Press::Cancel);
        }
        let mut parts = rest.split(':');
        let (kind, battery, switch, on) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let setting = Setting {
            switch: switch.parse().ok()?,
            on: match on {
                "1" => true,
                "0" => false,
                _ => return None,
            },
        };
        let battery = battery.parse().ok()?;
        match kind {
            "ask" => Some(Press::Ask(battery, setting)),
            "do" => Some(Press::Do(battery, setting)),
            _ => None,
        }
    }

    fn data(kind: &str, battery: usize, setting: Setting) -> String {
        format!(
            "sw:{kind}:{battery}:{}:{}",
            setting.switch,
            u8::from(setting.on)
        )
    }
}

/// The menu: each battery this process may switch, its switches as the BMS reports them,
/// and a button that asks to turn each the other way. `None` (with why) where there is none.
pub fn menu(status: &StatusView, control: &Controller) -> (String, Option<InlineKeyboardMarkup>) {
    if !control.enabled() {
        return (
            "Switching is off. jkmon switches a BMS only where <code>JK_BMS_CONTROL</code> allows it (on, or the batteries by position or name), from the process that reads the BMS.".into(),
            None,
        );
    }
    let mut text = String::from("<b>Switches</b> (as each BMS reports them)\n");
    let mut rows = Vec::new();
    for b in &status.batteries {
        let Some(slot) = control.slot(b.position) else {
            continue;
        };
        let snapshot = b.snapshot.as_ref();
        let variant: Option<Variant> = snapshot.map(|s| s.cell_info.variant);
        let reported = snapshot.map(|s| &s.switches);
        text.push_str(&format!("\n<b>{}</b>", escape(&b.name)));
        let mut any = false;
        for switch in slot.switches(variant) {
            let Some(now) = reported.and_then(|r| r.get(switch.as_str())).copied() else {
                continue;
            };
            any = true;
            text.push_str(&format!("\n  {switch}: {}", on_off(now)));
            let turn = Setting { switch, on: !now };
            rows.push(vec![InlineKeyboardButton::callback(
                format!("{}: turn {switch} {}", b.name, on_off(turn.on)),
                Press::data("ask", b.position, turn),
            )]);
        }
        if !any {
            text.push_str("\n  its BMS has not reported its switches yet (offline?)");
        }
    }
    if rows.is_empty() {
        return (text, None);
    }
    (text, Some(InlineKeyboardMarkup::new(rows)))
}

/// The question a switch press asks.
pub fn confirm(battery: &str, position: usize, setting: Setting) -> (String, InlineKeyboardMarkup) {
    let text = format!(
        "Turn <b>{}</b> {} on <b>{}</b>?",
        setting.switch,
        on_off(setting.on).to_uppercase(),
        escape(battery)
    );
    let keyboard = InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback(
            format!("✅ Yes, turn {} {}", setting.switch, on_off(setting.on)),
            Press::data("do", position, setting),
        ),
        InlineKeyboardButton::callback("Cancel", "sw:cancel"),
    ]]);
    (text, keyboard)
}

/// Sends the write for `chat` and says what the BMS answered.
pub async fn apply(control: &Controller, chat: i64, position: usize, setting: Setting) -> String {
    let battery = control.name_of(position);
    let what = format!(
        "{} {} on {}",
        setting.switch,
        on_off(setting.on),
        escape(&battery)
    );
    match control.set(position, setting, Source::Bot(chat)).await {
        Ok(()) => format!("✅ {what}: confirmed by the BMS."),
        Err(e) => format!("❌ {what}: {}", escape(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::control::Switch;

    #[test]
    fn presses_read_back_what_the_buttons_carry_and_nothing_else() {
        let s = Setting {
            switch: Switch::Discharging,
            on: false,
        };
        assert_eq!(
            Press::parse(&Press::data("ask", 2, s)),
            Some(Press::Ask(2, s))
        );
        assert_eq!(
            Press::parse(&Press::data("do", 2, s)),
            Some(Press::Do(2, s))
        );
        assert_eq!(Press::parse("sw:cancel"), Some(Press::Cancel));
        for bad in [
            "sw:do:1:fan:1",
            "sw:do:x:charging:1",
            "sw:do:1:charging:2",
            "sw:go:1:charging:1",
            "refresh:status",
            "sw:do:1:charging",
        ] {
            assert_eq!(Press::parse(bad), None, "{bad}");
        }
        let (text, keyboard) = confirm("<Garage>", 1, s);
        assert_eq!(
            text,
            "Turn <b>discharging</b> OFF on <b>&lt;Garage&gt;</b>?"
        );
        assert_eq!(keyboard.inline_keyboard[0].len(), 2);
    }
}
