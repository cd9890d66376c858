package slacknet

import (
	"encoding/json"
	"strconv"
	"strings"
)

// MessageEvent is a message (or app_mention) event as Slack delivers it
// in a Socket Mode events_api envelope.
type MessageEvent struct {
	EnvelopeID   string
	EventID      string
	Type         string // "message" (default) or "app_mention"
	Subtype      string // "", "bot_message", "message_changed", …
	User         string
	BotID        string
	Text         string
	Channel      string
	ChannelType  string // "channel" (default for C…), "group", "im"
	TS           string
	ThreadTS     string
	RetryAttempt int
	RetryReason  string
	// RawBlocks replaces the rich_text blocks Slack derives from Text
	// (e.g. to send a block the client library cannot decode).
	RawBlocks string
}

// JSON renders the envelope in Slack's shape.
func (e MessageEvent) JSON() string {
	typ := e.Type
	if typ == "" {
		typ = "message"
	}
	ev := map[string]any{"type": typ, "text": e.Text, "ts": e.TS, "event_ts": e.TS, "channel": e.Channel,
		"team": DefaultTeamID}
	if e.User != "" {
		ev["user"] = e.User
		ev["client_msg_id"] = "5a8c2b3e-0000-4000-8000-" + pad12(e.TS)
	}
	if e.Subtype != "" {
		ev["subtype"] = e.Subtype
	}
	if e.BotID != "" {
		ev["bot_id"] = e.BotID
	}
	if e.ThreadTS != "" {
		ev["thread_ts"] = e.ThreadTS
	}
	if typ == "message" {
		ct := e.ChannelType
		if ct == "" {
			ct = "channel"
			if strings.HasPrefix(e.Channel, "D") {
				ct = "im"
			} else if strings.HasPrefix(e.Channel, "G") {
				ct = "group"
			}
		}
		ev["channel_type"] = ct
	}
	if e.RawBlocks != "" {
		ev["blocks"] = json.RawMessage(e.RawBlocks)
	} else if e.User != "" {
		ev["blocks"] = []any{map[string]any{"type": "rich_text", "block_id": "b1", "elements": []any{
			map[string]any{"type": "rich_text_section", "elements": []any{
				map[string]any{"type": "text", "text": e.Text}}}}}}
	}
	payload := map[string]any{
		"token": "XXYYZZ", "team_id": DefaultTeamID, "api_app_id": DefaultAppID, "event": ev,
		"type": "event_callback", "event_id": e.EventID, "event_time": 1790000000,
		"authorizations": []any{map[string]any{"enterprise_id": nil, "team_id": DefaultTeamID,
			"user_id": DefaultBotUserID, "is_bot": true, "is_enterprise_install": false}},
		"is_ext_shared_channel": false, "event_context": "4-eyJldCI6Im1lc3NhZ2UifQ",
	}
	return envelope("events_api", e.EnvelopeID, payload, false, e.RetryAttempt, e.RetryReason)
}

// SlashCommand is a slash command invocation as Slack delivers it in a
// Socket Mode slash_commands envelope.
type SlashCommand struct {
	EnvelopeID string
	Command    string // default "/poolbot"
	Text       string
	UserID     string
	UserName   string
	ChannelID  string
}

// JSON renders the envelope in Slack's shape.
func (c SlashCommand) JSON() string {
	cmd := c.Command
	if cmd == "" {
		cmd = "/poolbot"
	}
	payload := map[string]any{
		"token": "XXYYZZ", "team_id": DefaultTeamID, "team_domain": "wikimedia", "channel_id": c.ChannelID,
		"channel_name": "operations", "user_id": c.UserID, "user_name": c.UserName, "command": cmd,
		"text": c.Text, "api_app_id": DefaultAppID, "is_enterprise_install": "false",
		"response_url": "https://hooks.slack.com/commands/T0WMF/1/abc",
		"trigger_id":   "1.2.3",
	}
	return envelope("slash_commands", c.EnvelopeID, payload, true, 0, "")
}

func envelope(typ, id string, payload any, acceptsPayload bool, retry int, reason string) string {
	env := map[string]any{"envelope_id": id, "type": typ, "payload": payload,
		"accepts_response_payload": acceptsPayload}
	if typ == "events_api" {
		env["retry_attempt"] = retry
		env["retry_reason"] = reason
	}
	b, err := json.Marshal(env)
	if err != nil {
		panic(err) // only maps of plain values
	}
	return string(b)
}

func pad12(ts string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, ts)
	if n, err := strconv.ParseUint(digits, 10, 64); err == nil {
		digits = strconv.FormatUint(n%1e12, 10)
	}
	return strings.Repeat("0", max(0, 12-len(digits))) + digits
}
