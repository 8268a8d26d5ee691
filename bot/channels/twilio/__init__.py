"""Twilio, for SMS and WhatsApp: `inbound` (the webhooks: messages in, TwiML replies out,
delivery reports) and `outbound` (sending through Twilio's REST API)."""
