"""The request pipeline: context, the disclosure choke point, and the audit hook."""
