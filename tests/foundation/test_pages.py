"""The login page, the home page, the error pages, the API's index and its JSON 404, the favicon and the admin
pages render."""


def test_login_page(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200 and b"Sign in" in response.content


def test_login_then_home_lists_only_member_datasets(client, users):
    from annotations.models import Dataset

    mine = Dataset.objects.create(name="Mine")
    Dataset.objects.create(name="Theirs")
    mine.members.add(users["clinician"])
    response = client.post("/accounts/login/", {"username": "clin", "password": "pw-clin"})
    assert response.status_code == 302
    page = client.get("/").content.decode()
    assert "Mine" in page and "Theirs" not in page
    client.force_login(users["admin"])
    page = client.get("/").content.decode()
    assert "Mine" in page and "Theirs" in page


def test_403_and_404_pages_say_why_and_link_back(client_as):
    c = client_as("clinician")
    page = c.get("/runs/")
    text = page.content.decode()
    assert page.status_code == 403 and "needs the lead role" in text and 'href="/"' in text
    missing = c.get("/datasets/999999/")
    text = missing.content.decode()
    assert missing.status_code == 404 and "Nothing here" in text and "/datasets/999999/" in text
    assert 'href="/"' in text and "Traceback" not in text


def test_api_index_links_what_the_role_may_list(client, client_as):
    """/api/ was the site's HTML 404 page though README presents it as the API: now an index, refused to
    anonymous requests like the rest of the API (401, with how to authenticate)."""
    anonymous = client.get("/api/")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Token")
    links = client_as("clinician").get("/api/").json()
    assert {"datasets", "predictions", "jobs", "auth_token", "schema", "docs", "redoc"} <= set(links)
    assert "runs" not in links  # the runs API is the lead's
    lead = client_as("lead")
    links = lead.get("/api/").json()
    assert links["runs"].endswith("/api/runs/") and links["schema"].endswith("/api/schema/")
    for key, url in links.items():
        if key != "auth_token":  # POST only
            assert lead.get(url).status_code == 200, (key, url)


def test_unknown_api_paths_answer_json_404_and_pages_keep_theirs(client_as):
    c = client_as("clinician")
    for url in ("/api/nothing/", "/api/runs/abc/", "/api/datasets/1/nothing/", "/api/v2/"):
        r = c.get(url)
        assert r.status_code == 404 and r["Content-Type"] == "application/json", (url, r["Content-Type"])
        assert url in r.json()["detail"]
    assert c.get("/api/datasets").status_code == 301  # a missing slash is still redirected, not a 404
    page = c.get("/nothing-here/")
    assert page.status_code == 404 and "Nothing here" in page.content.decode()


def test_favicon(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 301 and r["Location"].endswith("frontend/favicon.svg")
    assert client.get(r["Location"]).status_code == 200


def test_admin_lists_runs_evaluations_predictions_and_boxes(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root"))
    c = client
    index = c.get("/admin/").content.decode()
    assert "Studies" in index and "Studys" not in index
    for model in ("inference/trainingrun", "inference/evaluation", "inference/prediction", "inference/image25d",
                  "annotations/cropbox", "annotations/study", "jobs/job"):
        assert c.get(f"/admin/{model}/").status_code == 200, model
