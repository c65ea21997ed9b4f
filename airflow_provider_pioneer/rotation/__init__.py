"""Key rotation: the stored document, the key stores, the steps of a rotation.

* :mod:`.document`: the rotation document every store holds, and what is wrong with a value;
* :mod:`.companion`: the unmasked companion Variable (``pioneer_key_rotation``) that names the key;
* :mod:`.naming`: managed key names and the pure rules of what to revoke;
* :mod:`.store`: the :class:`~.store.KeyStore` interface and the registry of kinds;
  :mod:`.variable`: the Airflow Variable store;
* the steps (preflight, create, verify, store, revoke) over one run object, which
  :class:`~airflow_provider_pioneer.operators.key_rotation.PioneerKeyRotationOperator` orchestrates.

Importing this package loads no Airflow module; :mod:`.variable` and the steps do.
"""

from __future__ import annotations
