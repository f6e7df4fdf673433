-- wrk script: POST one CSV row (the body both apps accept).
wrk.method = "POST"
wrk.body = "L,298.1,308.6,1551,42.8,0"
wrk.headers["Content-Type"] = "text/csv"
