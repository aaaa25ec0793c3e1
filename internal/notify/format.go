package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// encode renders m in a target's format.
func encode(format string, m Message) ([]byte, error) {
	var v any
	switch format {
	case FormatSlack:
		v = slackBody{Text: SlackText(m.Text, m.Link, m.Command)}
	case FormatJSON, "":
		fields := m.Fields
		if fields == nil {
			fields = map[string]any{}
		}
		v = jsonBody{Event: m.Event, Text: m.Text, Link: m.Link, Command: m.Command, Fields: fields, Time: m.Time.UTC().Format(time.RFC3339)}
	default:
		return nil, fmt.Errorf("unknown format %q", format)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s notification %q: %w", format, m.Event, err)
	}
	return b, nil
}

type slackBody struct {
	Text string `json:"text"`
}

type jsonBody struct {
	Event   string         `json:"event"`
	Text    string         `json:"text"`
	Link    string         `json:"link,omitempty"`
	Command string         `json:"command,omitempty"`
	Fields  map[string]any `json:"fields"`
	Time    string         `json:"time"`
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// SlackText is the "text" of a Slack incoming-webhook message: text with
// Slack's control characters escaped, then an mrkdwn link "<url|open>" when
// link is set, then the command as code on a line of its own when command
// is set. A user-supplied reason therefore cannot inject links or mentions.
func SlackText(text, link, command string) string {
	s := slackEscaper.Replace(text)
	if link != "" {
		s += " <" + strings.ReplaceAll(slackEscaper.Replace(link), "|", "%7C") + "|open>"
	}
	if command != "" {
		s += "\n`" + strings.ReplaceAll(slackEscaper.Replace(command), "`", "'") + "`"
	}
	return s
}
