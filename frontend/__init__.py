"""Browser code (static ES modules, no CDN), base templates and the pages' shell views."""
