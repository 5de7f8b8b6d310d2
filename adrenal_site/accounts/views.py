"""The sign-in page, answering 429 with the wait while the address is blocked (``throttle``)."""
from __future__ import annotations

from django.contrib.auth.views import LoginView

from .throttle import seconds_blocked


class ThrottledLoginView(LoginView):
    def post(self, request, *args, **kwargs):
        wait = seconds_blocked(request, request.POST.get("username", ""))
        if wait:
            response = self.render_to_response(self.get_context_data(form=self.get_form(), blocked_seconds=wait),
                                               status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)
