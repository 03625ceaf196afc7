"""The catalogue: SQLAlchemy 2 models, engine set-up, unit of work, Alembic migrations."""

# every table belongs to one metadata (Base.metadata): load the modules that declare them
from fedlake.catalog import iam_models as iam_models
from fedlake.catalog import models as models
