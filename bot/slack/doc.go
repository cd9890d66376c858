// Package slack is poolbot's Slack adapter (Socket Mode, see Adapter) and
// the Slack mirror of notices and SAL lines (see Mirror). It imports the
// slack-go client library as slackapi, to keep it apart from this package's
// own name.
package slack
