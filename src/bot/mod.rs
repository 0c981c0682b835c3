//! The Telegram bot (teloxide, long polling): `/status`, `/battery`, `/cells`, `/energy`, `/help`,
//! `/start`, `/chatid`, a Refresh button that edits its message in place, and `/switch`
//! ([`switch`]) where JK_BMS_CONTROL lets this process switch a battery.
//!
//! Only the chats of `TELEGRAM_ALLOWED_CHAT_IDS` and `TELEGRAM_CHAT_ID` get answers; any other
//! chat gets one short refusal with its own id (so the owner can add it) and nothing else. The
//! token is a secret: it never appears in a log line, and errors from the Bot API are logged
//! with it cut out. The bot reads the store like the web pages do, off the async runtime, and
//! never waits on the BMS sessions or the database writer.
//!
//! Layer 6 (a view): may use `store`, `report`, `control` and `telegram` (not `session`);
//! never another view.

pub mod format;
pub mod switch;

use std::sync::Arc;
use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{
    InlineKeyboardButton, InlineKeyboardMarkup, MaybeInaccessibleMessage, ParseMode,
};
use teloxide::utils::command::BotCommands;
use tokio_util::sync::CancellationToken;

use crate::control::Controller;
use crate::store::read::{ReadConfig, Readers, StatusView};
use crate::telegram::{self, TelegramConfig};

/// The commands, with the descriptions Telegram's command menu shows.
#[derive(BotCommands, Clone, Debug, PartialEq)]
#[command(rename_rule = "lowercase")]
pub enum Command {
    #[command(description = "what this bot does")]
    Start,
    #[command(description = "the commands")]
    Help,
    #[command(description = "grid, load, PV and every battery")]
    Status,
    #[command(description = "everything about each battery")]
    Battery,
    #[command(description = "every cell's voltage")]
    Cells,
    #[command(description = "today's and yesterday's kWh, time left")]
    Energy,
    #[command(description = "this chat's id")]
    Chatid,
    #[command(description = "charging, discharging, balancer, heater (where switching is on)")]
    Switch,
}

/// What the handlers share.
struct Ctx {
    config: TelegramConfig,
    readers: Readers,
    read: ReadConfig,
    control: Controller,
}

impl Ctx {
    async fn status(&self) -> Result<StatusView, String> {
        self.readers
            .status(&self.read)
            .await
            .map_err(|e| e.to_string())
    }

    /// The text of one view, or why there is none.
    async fn render(&self, view: &str) -> String {
        let status = match self.status().await {
            Ok(s) => s,
            Err(e) => return format!("Status unavailable: {}", telegram::escape(&e)),
        };
        match view {
            "battery" => format::battery(&status),
            "cells" => format::cells(&status),
            "energy" => match self.readers.energy(&self.read, energy_days()).await {
                Ok(days) => format::energy(&days, &status),
                Err(e) => format!("Energy unavailable: {}", telegram::escape(&e.to_string())),
            },
            _ => format::status(&status),
        }
    }
}

/// The days `/energy` reads: from the first of last month to today.
fn energy_days() -> u32 {
    let today = crate::store::read::local_day(chrono::Utc::now());
    crate::store::energy::days_for_months(today, 2)
}

fn refresh(view: &str) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
        "🔄 Refresh",
        format!("refresh:{view}"),
    )]])
}

async fn on_message(
    bot: Bot,
    msg: Message,
    me: teloxide::types::Me,
    ctx: Arc<Ctx>,
) -> ResponseResult<()> {
    let Some(text) = msg.text() else {
        return Ok(());
    };
    let chat = msg.chat.id;
    let Ok(command) = Command::parse(text, me.username()) else {
        return Ok(()); // not a command of this bot: stay quiet
    };
    if !ctx.config.allows(chat.0) {
        tracing::warn!(
            "bot: refused {command:?} from chat {} (not in TELEGRAM_ALLOWED_CHAT_IDS)",
            chat.0
        );
        bot.send_message(
            chat,
            format!(
                "This jkmon answers only its owner's chats. Your chat id is {}: add it to TELEGRAM_ALLOWED_CHAT_IDS to get answers here.",
                chat.0
            ),
        )
        .await?;
        return Ok(());
    }
    let (text, view) = match command {
        Command::Start | Command::Help => (format::help(), None),
        Command::Chatid => (format!("This chat's id: <code>{}</code>", chat.0), None),
        Command::Status => (ctx.render("status").await, Some("status")),
        Command::Battery => (ctx.render("battery").await, Some("battery")),
        Command::Cells => (ctx.render("cells").await, Some("cells")),
        Command::Energy => (ctx.render("energy").await, Some("energy")),
        Command::Switch => {
            let (text, keyboard) = match ctx.status().await {
                Ok(status) => switch::menu(&status, &ctx.control),
                Err(e) => (
                    format!("Status unavailable: {}", telegram::escape(&e)),
                    None,
                ),
            };
            let mut request = bot.send_message(chat, text).parse_mode(ParseMode::Html);
            if let Some(keyboard) = keyboard {
                request = request.reply_markup(keyboard);
            }
            request.await?;
            return Ok(());
        }
    };
    let mut request = bot.send_message(chat, text).parse_mode(ParseMode::Html);
    if let Some(view) = view {
        request = request.reply_markup(refresh(view));
    }
    request.await?;
    Ok(())
}

async fn on_callback(bot: Bot, q: CallbackQuery, ctx: Arc<Ctx>) -> ResponseResult<()> {
    if let Some(press) = q.data.as_deref().and_then(switch::Press::parse) {
        return on_switch(bot, &q, press, &ctx).await;
    }
    let Some(view) = q.data.as_deref().and_then(|d| d.strip_prefix("refresh:")) else {
        bot.answer_callback_query(q.id.clone()).await?;
        return Ok(());
    };
    let view = match view {
        "battery" => "battery",
        "cells" => "cells",
        "energy" => "energy",
        _ => "status",
    };
    let target = match &q.message {
        Some(MaybeInaccessibleMessage::Regular(m)) => Some((m.chat.id, m.id)),
        _ => None,
    };
    let Some((chat, message)) = target else {
        bot.answer_callback_query(q.id.clone()).await?;
        return Ok(());
    };
    if !ctx.config.allows(chat.0) {
        bot.answer_callback_query(q.id.clone())
            .text("Not allowed here")
            .await?;
        return Ok(());
    }
    let text = ctx.render(view).await;
    match bot
        .edit_message_text(chat, message, text)
        .parse_mode(ParseMode::Html)
        .reply_markup(refresh(view))
        .await
    {
        Ok(_) => {}
        // nothing changed since the last press: fine
        Err(teloxide::RequestError::Api(teloxide::ApiError::MessageNotModified)) => {}
        Err(e) => return Err(e),
    }
    bot.answer_callback_query(q.id.clone())
        .text("✅ Updated")
        .await?;
    Ok(())
}

/// A press in the `/switch` menu: a switch asks for confirmation, the confirmation sends the
/// write and shows the BMS's answer, Cancel sends nothing. Only in allowed chats.
async fn on_switch(
    bot: Bot,
    q: &CallbackQuery,
    press: switch::Press,
    ctx: &Ctx,
) -> ResponseResult<()> {
    let target = match &q.message {
        Some(MaybeInaccessibleMessage::Regular(m)) => Some((m.chat.id, m.id)),
        _ => None,
    };
    let Some((chat, message)) = target.filter(|(chat, _)| ctx.config.allows(chat.0)) else {
        tracing::warn!(
            "bot: refused a switch press from chat {:?} (not in TELEGRAM_ALLOWED_CHAT_IDS)",
            target.map(|(c, _)| c.0)
        );
        bot.answer_callback_query(q.id.clone())
            .text("Not allowed here")
            .await?;
        return Ok(());
    };
    let edit = |text: String, keyboard: Option<InlineKeyboardMarkup>| {
        let mut request = bot
            .edit_message_text(chat, message, text)
            .parse_mode(ParseMode::Html);
        if let Some(k) = keyboard {
            request = request.reply_markup(k);
        }
        request
    };
    match press {
        switch::Press::Cancel => {
            bot.answer_callback_query(q.id.clone()).await?;
            edit("Nothing was changed.".into(), None).await?;
        }
        switch::Press::Ask(position, setting) => {
            bot.answer_callback_query(q.id.clone()).await?;
            let name = ctx.control.name_of(position);
            let (text, keyboard) = switch::confirm(&name, position, setting);
            edit(text, Some(keyboard)).await?;
        }
        switch::Press::Do(position, setting) => {
            // answered at once: the BMS's confirmation may take seconds
            bot.answer_callback_query(q.id.clone())
                .text("Sending to the BMS…")
                .await?;
            edit(format!("{setting}: sent, waiting for the BMS…"), None).await?;
            let text = switch::apply(&ctx.control, chat.0, position, setting).await;
            edit(text, None).await?;
        }
    }
    Ok(())
}

/// The bot's own account, asked until the Bot API answers (every 30 s); `None` when `stop`
/// fires first.
async fn who_am_i(
    bot: &Bot,
    config: &TelegramConfig,
    stop: &CancellationToken,
) -> Option<teloxide::types::Me> {
    loop {
        match bot.get_me().await {
            Ok(me) => return Some(me),
            Err(e) => {
                tracing::warn!(
                    "bot: the Bot API did not answer getMe: {}; retrying in 30 s",
                    config.redact(&e.to_string())
                );
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.cancelled() => return None,
                }
            }
        }
    }
}

/// The menu Telegram shows under "/" (a failure costs only the menu). Telegram's rule for a
/// command's name is 1-32 of a-z, 0-9 and _: no leading "/".
async fn set_menu(bot: &Bot, config: &TelegramConfig) {
    let menu = Command::bot_commands().into_iter().map(|mut c| {
        c.command = c.command.trim_start_matches('/').to_string();
        c
    });
    if let Err(e) = bot.set_my_commands(menu).await {
        tracing::warn!(
            "bot: could not set the command menu: {}",
            config.redact(&e.to_string())
        );
    }
}

/// Runs the bot until `stop` fires.
pub async fn run(
    config: TelegramConfig,
    readers: Readers,
    read: ReadConfig,
    control: Controller,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let bot = config.bot().map_err(anyhow::Error::msg)?;
    let Some(me) = who_am_i(&bot, &config, &stop).await else {
        return Ok(());
    };
    set_menu(&bot, &config).await;
    tracing::info!("bot: @{} answers chats {:?}", me.username(), {
        let mut chats = config.allowed.clone();
        chats.extend(config.chat_id);
        chats
    });
    let ctx = Arc::new(Ctx {
        config: config.clone(),
        readers,
        read,
        control,
    });
    let handler = dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback));
    let redactor = config.clone();
    let bot_for_polling = bot.clone();
    let mut dispatcher = Dispatcher::builder(bot, handler)
        .dependencies(dptree::deps![ctx, me])
        .error_handler(Arc::new(move |e: teloxide::RequestError| {
            let text = redactor.redact(&e.to_string());
            Box::pin(async move { tracing::warn!("bot: {text}") })
                as futures_util::future::BoxFuture<'static, ()>
        }))
        .build();
    let shutdown = dispatcher.shutdown_token();
    tokio::spawn(async move {
        stop.cancelled().await;
        if let Ok(done) = shutdown.shutdown() {
            done.await;
        }
    });
    let listener = teloxide::update_listeners::Polling::builder(bot_for_polling)
        .timeout(Duration::from_secs(10))
        .delete_webhook()
        .await
        .build();
    let listener_errors = ListenerErrors::new(config.clone());
    dispatcher
        .dispatch_with_listener(
            listener,
            Arc::new(move |e: teloxide::RequestError| {
                listener_errors.report(&e);
                Box::pin(async {}) as futures_util::future::BoxFuture<'static, ()>
            }),
        )
        .await;
    Ok(())
}

/// What to tell the owner when `getUpdates` fails: a second poller on the same token (409,
/// typically the Python monitor's `telegram_bot.py` still running) once and clearly, anything
/// else as it comes, with the token cut out.
struct ListenerErrors {
    config: TelegramConfig,
    conflict_told: std::sync::atomic::AtomicBool,
}

impl ListenerErrors {
    fn new(config: TelegramConfig) -> ListenerErrors {
        ListenerErrors {
            config,
            conflict_told: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn report(&self, e: &teloxide::RequestError) {
        use std::sync::atomic::Ordering;
        if telegram::is_conflict(e) {
            if !self.conflict_told.swap(true, Ordering::Relaxed) {
                tracing::error!("bot: {}", telegram::CONFLICT_FIX);
            } else {
                tracing::debug!("bot: getUpdates conflict again (another poller on this token)");
            }
            return;
        }
        tracing::warn!(
            "bot: getUpdates failed: {}",
            self.config.redact(&e.to_string())
        );
    }
}
