from budgeting_site.platform.checks import csrf_protects_the_pages


def test_the_pages_csrf_middleware_satisfies_the_check():
    assert csrf_protects_the_pages() == []


def test_a_middleware_list_without_csrf_protection_is_an_error(settings):
    settings.MIDDLEWARE = [
        m
        for m in settings.MIDDLEWARE
        if m != "budgeting_site.platform.middleware.PageCsrfViewMiddleware"
    ]
    assert [m.id for m in csrf_protects_the_pages()] == ["platform.E001"]


def test_djangos_own_csrf_middleware_satisfies_it_too(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    assert csrf_protects_the_pages() == []
