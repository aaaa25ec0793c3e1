package web_test

// roles are the cluster's roles in the tests of this package.
const roles = `
kind: role
metadata: {name: dev}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: dev}
    request:
      roles: [prod-admin]
      max_duration: 1h
      reason_required: true
---
kind: role
metadata: {name: prod-admin}
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: {env: prod}
---
kind: role
metadata: {name: reviewer}
spec:
  allow:
    review_requests: {roles: ['prod-*']}
`
