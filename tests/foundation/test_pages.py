"""The login page and the home page render."""


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
