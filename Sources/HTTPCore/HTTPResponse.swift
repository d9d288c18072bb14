/// Encodes a response head and body.
public enum HTTPResponse {
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 101: "Switching Protocols"
        case 200: "OK"
        case 201: "Created"
        case 204: "No Content"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 422: "Unprocessable Content"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 414: "URI Too Long"
        case 426: "Upgrade Required"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }

    public static func encode(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n"
        for field in withNoSniff(status, headers).fields { head += "\(field.name): \(field.value)\r\n" }
        if status != 101 && status != 204 && status != 304 && headers["Content-Length"] == nil {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    /// A head alone, for a body of unknown length that ends when the connection closes.
    public static func encodeHead(status: Int, headers: HTTPHeaders) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n"
        for field in withNoSniff(status, headers).fields { head += "\(field.name): \(field.value)\r\n" }
        return Array((head + "\r\n").utf8)
    }

    /// Every response but a 101 says `X-Content-Type-Options: nosniff`: a browser must not
    /// guess that a JSON error echoing request text is HTML or script.
    static func withNoSniff(_ status: Int, _ headers: HTTPHeaders) -> HTTPHeaders {
        guard status != 101, headers["X-Content-Type-Options"] == nil else { return headers }
        var all = headers
        all.add("X-Content-Type-Options", "nosniff")
        return all
    }

    /// A JSON error body `{"error": "...", "code": "..."}` (the project's error shape).
    public static func jsonError(status: Int, code: String, message: String, headers: HTTPHeaders = HTTPHeaders()) -> [UInt8] {
        var all = headers
        all.add("Content-Type", "application/json")
        all.add("Connection", "close")
        let body = "{\"error\":\(jsonString(message)),\"code\":\(jsonString(code))}"
        return encode(status: status, headers: all, body: Array(body.utf8))
    }

    /// A JSON string literal for `text`.
    public static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
