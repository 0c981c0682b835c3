//! Telegram, shared by the bot (which answers) and the alerts (which send): the token and
//! chats, the client on the configured Bot API, HTML escaping, and what the Bot API's errors
//! mean. Knows nothing of batteries; both `bot` and `alerts` use it, neither uses the other.
//!
//! Layer 1: uses no other module of jkmon.

use teloxide::Bot;

/// Telegram's settings (from the typed config): the bot answers with them, the alerts send
/// with them.
#[derive(Clone, PartialEq)]
pub struct TelegramConfig {
    /// `TELEGRAM_BOT_TOKEN`.
    pub token: String,
    /// `TELEGRAM_API_URL` (default the public Bot API).
    pub api_url: String,
    /// `TELEGRAM_CHAT_ID`: the owner's chat; alerts go there.
    pub chat_id: Option<i64>,
    /// `TELEGRAM_ALLOWED_CHAT_IDS`.
    pub allowed: Vec<i64>,
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("token", &"***")
            .field("api_url", &self.api_url)
            .field("chat_id", &self.chat_id)
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl TelegramConfig {
    pub fn allows(&self, chat: i64) -> bool {
        self.chat_id == Some(chat) || self.allowed.contains(&chat)
    }

    /// `text` with the token cut out (reqwest puts the request URL, token included, into its
    /// errors).
    pub fn redact(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.token, "***")
        }
    }

    /// A teloxide `Bot` on the configured API.
    pub fn bot(&self) -> Result<Bot, String> {
        let url = reqwest::Url::parse(&self.api_url)
            .map_err(|e| format!("TELEGRAM_API_URL=\"{}\" is not a URL: {e}", self.api_url))?;
        Ok(Bot::new(self.token.clone()).set_api_url(url))
    }
}

/// Escapes text for Telegram's HTML mode (`&`, `<`, `>`): teloxide's own.
pub use teloxide::utils::html::escape;

/// What a 409 from `getUpdates` means and what to do.
pub const CONFLICT_FIX: &str = "another program polls Telegram with this bot token (the Bot API answered 409 Conflict to getUpdates), so each of the two misses messages: stop the other one — the Python monitor's bot (telegram_bot.py: `systemctl disable --now easun-bot` or its `bot` container), or a second jkmon run/bot on this token — or take TELEGRAM_BOT_TOKEN out of this jkmon's configuration";

/// Whether `e` is the Bot API's "terminated by other getUpdates request".
pub fn is_conflict(e: &teloxide::RequestError) -> bool {
    matches!(
        e,
        teloxide::RequestError::Api(teloxide::ApiError::TerminatedByOtherGetUpdates)
    ) || e.to_string().contains("Conflict:")
}
