"""Top-level URL configuration: pages of each app, the API under /api/ (its index at /api/), schema and docs.
Errors Django answers itself (no such path, a server error) are JSON under /api/, the site's pages elsewhere."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from adrenal_site.accounts.api import ObtainToken
from adrenal_site.accounts.views import ThrottledLoginView
from adrenal_site.api_root import ApiRoot
from adrenal_site.csp import csp_extend
from adrenal_site.jobs import api as jobs_api
from adrenal_site.jobs import views as jobs_views

api_patterns = [
    path("", ApiRoot.as_view(), name="api-root"),
    path("", include("annotations.api.urls")),
    path("", include("inference.api.urls")),
    path("jobs/", jobs_api.JobList.as_view(), name="api-job-list"),
    path("jobs/<int:pk>/", jobs_api.JobDetail.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/cancel/", jobs_api.JobCancel.as_view(), name="api-job-cancel"),
    path("auth/token/", ObtainToken.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its start-up script served as a file (?script), not inline; Redoc writes its styles inline
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("docs/redoc/", csp_extend(style_src=["'unsafe-inline'"])(SpectacularRedocView.as_view(url_name="api-schema")),
         name="api-redoc"),
]

urlpatterns = [
    path("favicon.ico", RedirectView.as_view(url=static("frontend/favicon.svg"), permanent=True), name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include(api_patterns)),
    path("jobs/<int:pk>/", jobs_views.job_detail, name="job-detail"),
    path("", include("frontend.urls")),
    path("", include("annotations.urls")),
    path("", include("inference.urls")),
]

handler400 = "adrenal_site.api_root.bad_request"
handler403 = "adrenal_site.api_root.permission_denied"
handler404 = "adrenal_site.api_root.not_found"
handler500 = "adrenal_site.api_root.server_error"
