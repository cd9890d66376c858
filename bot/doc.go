// Package bot holds poolbot's IRC adapter and the local console adapter;
// the Slack adapter and mirror are in bot/slack. The vocabulary they share
// with the rest of poolbot (Message, Handler, Sayer, pacing, sanitising)
// is package chat, which links no chat library.
//
// An adapter's job ends at the protocol: it turns a network's events into
// chat.Messages (with the sender's account, never trusting a nick) and
// delivers text safely. Deciding what a message means is the commands
// package's job.
package bot
