"""FHIR R4 read and search (`/fhir/r4/`) and the subject-access bundle (docs/fhir.md).

One module per job: `codes` (systems and our extension URLs), the resource mappers
`map_*` (rows to resources, no I/O), `params` (search parameters, no I/O), `cursor`
(paging tokens), `bundle`, `outcome` (OperationOutcome errors), `capabilities` (the
table of what is supported, from which both the router and `/metadata` are made),
`feed` (the commit-ordered horizon of incremental pulls), `fhir_queries` (SQL), and
`router` / `subject_access` (the endpoints).
"""
