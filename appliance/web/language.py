"""The language picker: the page language (saved on the person's account when signed in,
in a cookie either way) and, on its own page, the language answers are written in."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from appliance.accounts import actions as account_actions
from inference.language import ANSWER_LANGUAGES


def answer_language_choices() -> list[tuple[str, str]]:
    names = {"en": "English", "nb": "Norsk bokmål", "de": "Deutsch"}
    return [("", _("The language of the question"))] + [
        (code, names.get(code, code)) for code in ANSWER_LANGUAGES
    ]


@require_http_methods(["GET", "POST"])
def choose_language(request: HttpRequest) -> HttpResponse:
    """GET: the language page (signed-in people). POST: save the choice and go back."""
    if request.method == "GET":
        return _language_page(request)
    pages = dict(settings.LANGUAGES)
    answers = dict(answer_language_choices())
    language = request.POST.get("language")
    answer_language = request.POST.get("answer_language")
    if (language is not None and language not in pages) or (
        answer_language is not None and answer_language not in answers
    ):
        messages.error(request, _("Choose one of the languages in the list."))
        return redirect(_back(request))
    if request.user.is_authenticated:
        account_actions.choose_languages(
            request.user, request.user, language=language, answer_language=answer_language
        )
    response = redirect(_back(request))
    if language:
        translation.activate(language)
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
            secure=settings.SESSION_COOKIE_SECURE,
        )
    return response


@login_required
def _language_page(request: HttpRequest) -> HttpResponse:
    return render(request, "language.html", {"answer_languages": answer_language_choices()})


def _back(request: HttpRequest) -> str:
    """The page the picker was on, if it is one of ours; else the start page."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/"
